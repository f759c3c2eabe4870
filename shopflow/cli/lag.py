"""``shopflow lag [GROUP] [--watch] [--json]``: consumer lag of the broker's groups, on the terminal.

The table and the JSON come from ``shopflow.lag`` (the engine the metrics and the console use too).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from shopflow.settings import get_settings

if TYPE_CHECKING:  # the engine (and confluent-kafka) is loaded when the command runs, not with every command
    from shopflow.lag import LagMonitor, LagReport, PartitionLag

EXIT_NOT_FOUND, EXIT_NOT_OK, EXIT_UNREACHABLE = 1, 2, 3
COLOURS = {"OK": "green", "WARN": "yellow"}  # the others are red
_console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _seconds(p: PartitionLag) -> str:
    if p.lag_s is None:
        return "-"
    return f"{p.lag_s:,.1f}{'*' if p.estimated else ''}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def render(report: LagReport) -> Group:
    """The report as the terminal shows it: a section per group, a row per partition."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in ("group", "topic", ">partition", ">committed", ">end", ">LSO", ">lag", ">lag s", "status", "member"):
        table.add_column(header.lstrip(">"), justify="right" if header.startswith(">") else "left")
    for g in report.groups:
        colour = COLOURS.get(g.status, "red")
        table.add_row(Text(g.group, style="bold"), f"{g.state.lower()}, {len(g.members)} member(s)", "", "", "",
                      "", _count(g.lag), "-" if g.lag_s is None else f"{g.lag_s:,.1f}", Text(g.status, colour),
                      g.error or "")
        for p in g.partitions:
            member = f"{p.member.client_id}@{p.member.host.lstrip('/')}" if p.member else "-"
            committed = "no commit" if p.committed is None else _count(p.committed)
            table.add_row("", p.topic, str(p.partition), committed, _count(p.end), _count(p.stable), _count(p.lag),
                          _seconds(p), Text(p.status, COLOURS.get(p.status, "red")), p.error or member)
        table.add_section()
    when = datetime.fromtimestamp(report.at).strftime("%H:%M:%S")
    notes = [f"sampled at {when}"]
    if any(p.estimated for g in report.groups for p in g.partitions):
        notes.append("* lag s estimated (its record is gone or could not be read)")
    if not report.complete:
        notes.append(f"statuses need {report.window_s:g} s of samples: `--watch` to see them settle")
    if not report.groups:
        notes.insert(0, "no consumer group on the broker")
    return Group(table, Text("; ".join(notes), style="dim"))


def exit_code(report: LagReport) -> int:
    return 0 if report.ok else EXIT_NOT_OK


def lag_command(
    group: str = typer.Argument(None, help="Only this consumer group (default: every group on the broker)."),
    watch: bool = typer.Option(False, "--watch", help="Sample again every SHOPFLOW_LAG_INTERVAL_S until Ctrl-C; "
                               "statuses settle over SHOPFLOW_LAG_WINDOW_S."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table (with --watch: one line per sample)."),
) -> None:
    """Consumer lag per group and partition: offsets, lag to the last stable offset, lag in seconds (age of
    the next record to process), members, and a status over a sliding window (OK, WARN, REWIND, STALL,
    STOP, ERR). Exits 0 when every group is OK, 1 when GROUP is not on the broker, 2 when a group is not
    OK, 3 when Kafka cannot be reached."""
    from shopflow.lag import GroupNotFound, LagError, LagMonitor

    settings = get_settings()
    monitor = LagMonitor(settings)
    try:
        if watch:
            code = _watch(monitor, group, as_json, settings.lag_interval_s)
        else:
            # Answers in milliseconds; a broker that is down takes the request timeout to say so.
            with Console(stderr=True).status(f"reading consumer groups from Kafka at {settings.bootstrap_servers}"):
                report = monitor.sample(group)
            if as_json:
                typer.echo(json.dumps(report.as_json()))
            else:
                _console.print(render(report))
            code = exit_code(report)
    except GroupNotFound as exc:
        typer.secho(f"error: {exc} (`shopflow lag` lists them all)", fg=typer.colors.RED, err=True)
        code = EXIT_NOT_FOUND
    except LagError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        code = EXIT_UNREACHABLE
    finally:
        monitor.close()
    raise typer.Exit(code)


def _watch(monitor: LagMonitor, group: str | None, as_json: bool, interval_s: float) -> int:
    """Sample until Ctrl-C; the exit code is the last sample's. Kafka going away is shown, then retried."""
    from shopflow.lag import GroupNotFound, LagError

    code = EXIT_UNREACHABLE
    live = None if as_json else Live(Text("reading the broker's consumer groups..."), console=_console,
                                     auto_refresh=False)

    def show(renderable: Group | Text, line: dict[str, object]) -> None:
        if live is None:
            typer.echo(json.dumps(line))
        else:
            live.update(renderable, refresh=True)

    with live or contextlib.nullcontext():
        try:
            while True:
                started = time.monotonic()
                try:
                    report = monitor.sample(group)
                    code = exit_code(report)
                    show(render(report), report.as_json())
                except GroupNotFound:
                    raise
                except LagError as exc:  # the windows are kept: statuses go on once Kafka is back
                    code = EXIT_UNREACHABLE
                    show(Text(f"{datetime.now():%H:%M:%S} {exc}; trying again every {interval_s:g} s", style="red"),
                         {"error": str(exc)})
                time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass
    if live is not None:
        _console.line()  # the last frame stays, the prompt goes below it
    return code
