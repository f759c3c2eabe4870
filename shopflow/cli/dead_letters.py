"""``shopflow dead-letters``: the ops console's dead-letters page on a terminal: list, show, redrive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer

from shopflow.cli.common import audit_cli, fail, print_table
from shopflow.settings import get_settings

if TYPE_CHECKING:
    import asyncpg

    from shopflow.dead_letters import Position, Redrive

T = TypeVar("T")

dead_letters_app = typer.Typer(help="Dead-letter topics: what they hold, and redrive once the cause is fixed.",
                               no_args_is_help=True)


def usage(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


async def _with_db(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    from shopflow.db import connect

    conn = await connect(get_settings())
    try:
        return await work(conn)
    finally:
        await conn.close()


def _run(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work(conn)`` on a connection of its own; a failure says what to do."""
    import asyncpg

    from shopflow.dead_letters import DeadLetterError

    try:
        return asyncio.run(_with_db(work))
    except DeadLetterError as exc:
        fail(exc)
    except (OSError, asyncpg.PostgresError) as exc:
        fail(RuntimeError(f"PostgreSQL: {exc}; is it up and migrated (`shopflow stack status`, "
                          "`shopflow db migrate`)?"))


@dead_letters_app.command("list")
def list_topics() -> None:
    """Every dead-letter topic of the catalog: records held now and ever received, redriven, pending."""
    from shopflow.dead_letters import dead_letter_topics_now

    topics = _run(lambda conn: dead_letter_topics_now(get_settings(), conn))
    print_table(["dead-letter topic", "source topic", ">held", ">received", ">redriven", ">pending"],
                [(t.topic, t.source_topic, t.held if t.exists else "no topic", t.received, t.redriven, t.pending)
                 for t in topics], footer=["", "", sum(t.held for t in topics), sum(t.received for t in topics),
                                           sum(t.redriven for t in topics), sum(t.pending for t in topics)])
    if any(t.pending for t in topics):
        typer.echo("pending: a redrive was interrupted; `shopflow dead-letters redrive TOPIC --pending` finishes it")


@dead_letters_app.command("show")
def show(
    topic: str = typer.Argument(..., help="A dead-letter topic, e.g. order-commands.dlq."),
    limit: int = typer.Option(20, "--limit", "-n", help="How many of the newest records."),
    where: str = typer.Option(None, "--where", help='A CEL filter, as `shopflow tap`\'s: '
                              'headers["dlq.reason"] == "unexpected-record"'),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per record (the tap's shape + redrive)."),
) -> None:
    """The newest records of a dead-letter topic, newest first: why, from where, and whether redriven."""
    from shopflow.dead_letters import MAX_NEWEST, DeadLetterError, Position, newest, redrives_of

    if not 1 <= limit <= MAX_NEWEST:
        usage(f"--limit is 1..{MAX_NEWEST}, not {limit}")
    _check(topic)
    try:
        records, summary = newest(get_settings(), topic, limit=limit, where=where)
    except DeadLetterError as exc:
        fail(exc)
    marks = _run(lambda conn: redrives_of(conn, [Position(r.topic, r.partition, r.offset) for r in records]))
    if as_json:
        for r in records:
            mark = marks.get(Position(r.topic, r.partition, r.offset))
            typer.echo(json.dumps({**r.as_json(), "redrive": None if mark is None else {
                "state": mark.state, "by": mark.redriven_by, "at": mark.redriven_at,
                "target_partition": mark.target_partition, "target_offset": mark.target_offset}}, default=str))
        return
    rows = []
    for r in records:
        dl = r.dead_letter
        mark = marks.get(Position(r.topic, r.partition, r.offset))
        rows.append((f"{r.partition}/{r.offset}", _time(r.timestamp_ms), dl.reason if dl else "-",
                     f"{dl.source_topic}/{dl.source_partition}/{dl.source_offset}" if dl else "-",
                     r.schema or r.value_format, _redrive_mark(mark), (dl.detail if dl else r.error or "")[:100]))
    print_table(["partition/offset", "time (UTC)", "reason", "from", "record", "redriven", "detail"], rows)
    typer.echo(summary.message)


def _matching(topic: str, where: str, scan_from: str | None, scan_to: str | None, max_scanned: int | None,
              ) -> tuple[list[Position], str]:
    """The dead letters the filter matches in the scanned range (``--from``/``--to``) and that range's
    ends, said with the range and, when the scan stopped at its bound, how to go on."""
    from shopflow.dead_letters import DeadLetterError, matching, offsets_of, scan_bound
    from shopflow.taps.seek import format_offsets

    try:
        start, end = offsets_of(scan_from, "--from"), offsets_of(scan_to, "--to")
    except DeadLetterError as exc:
        usage(str(exc))
    positions, summary = matching(get_settings(), topic, where, max_scanned=max_scanned, start=start, end=end)
    scanned_to = format_offsets(summary.positions)
    typer.echo(f"{len(positions)} record{'' if len(positions) == 1 else 's'} match, scanned up to offsets "
               f"{scanned_to}" + (f" from {format_offsets(start)}" if start else ""))
    bound = scan_bound(summary)
    if bound is not None:
        typer.secho(f"{bound}; go on with --from {scanned_to} once these are redriven, or raise --max-scanned",
                    fg=typer.colors.YELLOW)
    return positions, scanned_to


def _check(topic: str) -> None:
    """A topic that is not a dead-letter topic is a usage error (exit 2), with the catalog's listed."""
    from shopflow.dead_letters import DeadLetterError, check_topic

    try:
        check_topic(topic)
    except DeadLetterError as exc:
        usage(str(exc))


def _time(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _redrive_mark(mark: Redrive | None) -> str:
    if mark is None:
        return ""
    if mark.state == "pending":
        return "PENDING (interrupted)"
    return f"yes -> {mark.target_partition}/{mark.target_offset} by {mark.redriven_by}"


@dead_letters_app.command("redrive")
def redrive_command(
    topic: str = typer.Argument(..., help="A dead-letter topic, e.g. order-commands.dlq."),
    partition: int = typer.Option(None, "--partition", help="The record's partition (default 0 with --offset)."),
    offset: int = typer.Option(None, "--offset", help="Redrive this one record."),
    where: str = typer.Option(None, "--where", help="Redrive every record this CEL filter matches."),
    scan_from: str = typer.Option(None, "--from", help="With --where: scan from these offsets (0:12,1:40), "
                                  "where a scan stopped at its bound says to go on."),
    scan_to: str = typer.Option(None, "--to", help="With --where: scan only before these offsets, as a "
                                "--dry-run printed them, so that exactly its list is sent."),
    max_scanned: int = typer.Option(None, "--max-scanned", min=1,
                                    help="With --where: records scanned at most (default 100,000)."),
    pending_only: bool = typer.Option(False, "--pending", help="Finish the redrives that were interrupted."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be sent; send and claim nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before redriving more than one record."),
) -> None:
    """Send dead letters back to their source topic once the cause is fixed; each at most once, ever."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from shopflow.access import cli_actor
    from shopflow.dead_letters import DeadLetterError, Position, pending
    from shopflow.redrive import RedriveOutcome, redrive

    chosen = [name for name, given in (("--offset", offset is not None), ("--where", where is not None),
                                       ("--pending", pending_only)) if given]
    if len(chosen) != 1:
        usage("say which records: --offset O [--partition P], --where EXPR or --pending (exactly one)")
    if partition is not None and offset is None:
        usage("--partition goes with --offset")
    if where is None and (scan_from or scan_to or max_scanned):
        usage("--from, --to and --max-scanned go with --where")
    _check(topic)
    settings = get_settings()
    scanned_to = ""
    try:
        if offset is not None:
            positions = [Position(topic, partition or 0, offset)]
        elif where is not None:
            positions, scanned_to = _matching(topic, where, scan_from, scan_to, max_scanned)
        else:
            positions = _run(lambda conn: pending(conn, topic))
    except DeadLetterError as exc:
        fail(exc)
    if not positions:
        typer.echo("nothing to redrive")
        return
    if len(positions) > 1 and not dry_run and not yes:
        typer.confirm(f"send {len(positions)} records of {topic} back to their source topic?", abort=True)
    actor = cli_actor()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    outcomes: list[RedriveOutcome] = []
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as bars:
            task = bars.add_task("redrive" if not dry_run else "dry run", total=len(positions))

            def step(outcome: RedriveOutcome) -> None:
                outcomes.append(outcome)
                bars.advance(task)
                bars.console.print(outcome.message, highlight=False)

            _run(lambda conn: redrive(settings, conn, positions, redriven_by=actor, dry_run=dry_run,
                                      on_outcome=step))
    finally:  # also when it stopped half-way: what was sent goes in the audit log
        if not dry_run and outcomes:
            audit_cli("dead-letters.redrive", topic, {"sent": [str(o.position) for o in outcomes if o.sent],
                                                       "refused": {str(o.position): o.outcome
                                                                   for o in outcomes if not o.sent},
                                                       "where": where, "to": scanned_to or None})
    if dry_run and where is not None and scan_to is None:
        typer.echo(f"to send exactly these: the same command without --dry-run, with --to {scanned_to}")
    counts = {kind: sum(o.outcome == kind for o in outcomes) for kind in {o.outcome for o in outcomes}}
    typer.echo(f"{topic}: {sum(o.sent for o in outcomes)} sent"
               + "".join(f", {n} {k}" for k, n in sorted(counts.items()) if k != "sent"))
    if any(o.outcome in ("busy", "missing", "no-source") for o in outcomes):
        raise typer.Exit(1)
