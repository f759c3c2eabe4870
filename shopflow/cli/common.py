"""What every ``shopflow`` command shares: failing with a reason, and tables on the terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
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


def audit_cli(action: str, target: str, detail: Mapping[str, object] | None = None, required: bool = False) -> None:
    """One audit_log row for an action done from a terminal (actor ``cli:<os user>``). The action is done
    by then: a database that cannot be reached is said on stderr, not made a failure of the action;
    ``required``: the row is written before an action that may not run unaudited, else exit 1."""
    import asyncio

    from shopflow.access import audit, cli_actor
    from shopflow.db import connect
    from shopflow.settings import get_settings

    async def write() -> None:
        conn = await connect(get_settings())
        try:
            await audit(conn, actor=cli_actor(), action=action, target=target, detail=detail)
        finally:
            await conn.close()

    try:
        asyncio.run(write())
    except Exception as exc:  # noqa: BLE001 - asyncpg's and the OS's errors alike: the action stands
        if required:
            typer.secho(f"error: cannot audit {action} {target}, so it was not done ({exc}); is PostgreSQL up "
                        "and migrated (`shopflow db migrate`)?", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        typer.secho(f"warning: {action} {target} done but not written to the audit log ({exc}); "
                    "is PostgreSQL up and migrated (`shopflow db migrate`)?", fg=typer.colors.YELLOW, err=True)
