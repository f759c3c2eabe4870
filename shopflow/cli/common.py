"""What every ``shopflow`` command shares: failing with a reason, and tables on the terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table

# Piped or logged output is not cut at 80 columns (rich's width when stdout is not a terminal).
_console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def fail(exc: Exception) -> NoReturn:
    """Stop the command with exit status 1 and the error's one-line reason on stderr."""
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]], footer: Sequence[object] = ()) -> None:
    """Rows under their column headers; a column whose header starts with ">" is right-aligned (numbers)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, show_footer=bool(footer), pad_edge=False)
    for n, header in enumerate(columns):
        right = header.startswith(">")
        table.add_column(header.lstrip(">"), justify="right" if right else "left",
                         footer=str(footer[n]) if footer else "")
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    _console.print(table)
