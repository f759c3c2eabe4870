"""``shopflow tap TOPIC``: any topic decoded, from an offset or a time, live, filtered, masked, exported.

Records go to standard output (or ``--output``), the summary and progress to standard error, so
``shopflow tap orders | jq`` sees records only. The CLI talks to the cluster directly, with the
credentials of whoever runs it, so it may read any existing topic and ``--no-mask`` is allowed here,
said as a warning and audited before the first record is read (no audit row, no unmasked tap: exit 1);
the HTTP tap asks for the ``taps.unmask`` permission instead (``shopflow.taps.access``). Usage errors
(an unknown topic, a bad ``--where``, options that contradict) exit with status 2 and what to write
instead.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shopflow.settings import get_settings
from shopflow.taps.records import TapError, TapSummary, TapUnavailable


def usage(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def tap_command(
    topic: str = typer.Argument(None, help="The topic (any existing topic; the catalog's are in `shopflow topics`)."),
    partition: list[int] = typer.Option(None, "--partition", "-p", help="Read this partition only (repeatable)."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at each partition's first record."),
    offset: str = typer.Option(None, "--offset", help="Start at this offset (42), or per partition (0:42,3:17)."),
    since: str = typer.Option(None, "--since", help="Start this long ago: 30s, 10m, 2h, 1d."),
    at: str = typer.Option(None, "--at", help="Start at this time (ISO-8601, UTC unless it has an offset)."),
    until: str = typer.Option(None, "--until", help="Stop after the records up to this time, on every partition."),
    count: int = typer.Option(None, "--count", "-n", help="Stop after this many records shown (the one bound "
                              "on results)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep reading new records until Ctrl-C."),
    where: str = typer.Option(None, "--where", help="CEL filter, e.g. 'value.order_id == \"o-1\"'."),
    fields: str = typer.Option(None, "--fields", help="Keep only these value fields (a,b.c); metadata stays."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl, table, csv or parquet."),
    output: Path = typer.Option(None, "--output", "-o", help="A file (a directory for parquet); default stdout."),
    no_mask: bool = typer.Option(False, "--no-mask", help="Show personal fields in the clear (audited)."),
    max_scanned: int = typer.Option(None, "--max-scanned", help="Read at most this many records (default "
                                    "100000; unbounded when following)."),
    personal_fields: bool = typer.Option(False, "--personal-fields", help="List the fields a tap masks, and exit."),
) -> None:
    """Read a topic decoded (Avro through the registry, JSON, text or hex), bounded, filtered and masked."""
    from shopflow.taps.reader import request_of

    err = Console(stderr=True, highlight=False)
    if personal_fields:
        from shopflow.taps.masking import personal_fields_table

        Console(highlight=False).print(personal_fields_table())
        return
    if topic is None:
        raise usage("give a topic: shopflow tap TOPIC (the catalog's topics are in `shopflow topics list`)")
    try:
        request = request_of(topic, partitions=partition, from_beginning=from_beginning, offset=offset, since=since,
                             at=at, until=until, count=count, follow=follow, where=where, fields=fields,
                             max_scanned=max_scanned, mask=not no_mask)
    except TapError as exc:
        raise usage(str(exc)) from None
    if no_mask:
        err.print("[yellow]warning: --no-mask: personal fields are shown in the clear; this tap is audited[/]")
    _run(request, fmt, output, err)


def _run(request: Any, fmt: str, output: Path | None, err: Console) -> None:
    from shopflow.cli.common import audit_cli
    from shopflow.schemas.codec import AvroCodec
    from shopflow.schemas.registry import SchemaRegistry
    from shopflow.taps.access import tap_audit
    from shopflow.taps.export import open_writer
    from shopflow.taps.reader import Tap

    settings = get_settings()
    registry = SchemaRegistry(settings.registry_url)
    progress = _progress(err, records_on_terminal=output is None and sys.stdout.isatty())
    try:
        with Tap(settings, request, AvroCodec(registry)) as tap:
            entry = tap_audit(request, "cli")
            # an unmasked tap is audited before it reads, or not run: a masked one is no secret if unwritten
            audit_cli(entry.action, entry.target, entry.detail, required=not request.mask)
            writer = open_writer(fmt, output, fields=list(request.fields) if request.fields else None,
                                 writer_schema=registry.schema_by_id)
            if progress is not None:
                task = progress.add_task(request.topic, total=tap.expected)
                progress.start()
                tap.on_progress = lambda summary: progress.update(task, completed=summary.scanned)
            elif request.follow:
                # a live tail into a pipe (`| jq`) shows each batch as read, not when a buffer fills
                tap.on_progress = lambda summary: writer.flush()
            records = tap.records()
            try:
                with _sigterm_as_ctrl_c():
                    for record in records:
                        writer.write(record)
            except KeyboardInterrupt:
                # Ctrl-C (or SIGTERM) ends a tap, a live one especially: the summary says where it stopped,
                # also when it came while a record was being written, outside the reading
                records.close()
            finally:
                if progress is not None:
                    progress.stop()
                files = writer.close(tap.summary)
            _print_summary(err, tap.summary, files)
    except TapUnavailable as exc:
        err.print(f"[red]error: {exc}[/]")
        raise typer.Exit(1) from None
    except TapError as exc:
        raise usage(str(exc)) from None
    finally:
        registry.close()


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (``kill``, a supervisor, a container's stop) ends the reading as Ctrl-C does, so the records
    so far are flushed and the summary says where to continue; a second SIGTERM ends the process at once."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress(err: Console, records_on_terminal: bool) -> Progress | None:
    """A progress bar (records scanned of those to scan) on standard error when it is a terminal and the
    records go elsewhere (a file, a pipe): drawn between records on one terminal it would garble both."""
    if records_on_terminal or not sys.stderr.isatty():
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def _print_summary(err: Console, summary: TapSummary, files: list[Path]) -> None:
    err.print(f"[bold]{summary.stopped_by}[/]: {summary.message}", soft_wrap=True)
    for path in files:
        err.print(f"wrote {path}")
