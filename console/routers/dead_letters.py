"""The dead-letters page (``/dead-letters``): every dead-letter topic of the catalog with what it holds and
its redrives; one topic's newest records decoded (the tap engine, personal fields masked) with their
reason, detail and origin, a CEL filter kept in the URL; redrive of one record or of every record the
filter matches, confirmed (a dry run shows what would be sent), CSRF-checked, audited, at most once
per record (``shopflow.redrive``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel

from shopflow.access import Permission, audit
from shopflow.console.auth import OpsActor, OpsViewer, form_fields
from shopflow.console.pages import page
from shopflow.console.resources import Console, ConsoleDep
from shopflow.dead_letters import (
    MAX_NEWEST,
    DeadLetterError,
    Position,
    Redrive,
    check_topic,
    dead_letter_topics_now,
    matching,
    newest,
    offsets_of,
    redrives_of,
    scan_bound,
)
from shopflow.redrive import RedriveOutcome, redrive
from shopflow.schemas.deadletter import source_topic_of
from shopflow.taps.seek import format_offsets

router = APIRouter()

MAX_REDRIVE = 1000  # records one request of the page sends back; more is the CLI's job (it shows progress)
CONFIRM_LISTED = 50  # positions a confirm page lists


class TopicRow(BaseModel):
    topic: str
    source_topic: str
    held: int
    received: int
    redriven: int
    pending: int
    exists: bool


class DeadLettersOverview(BaseModel):
    topics: list[TopicRow]
    held: int
    pending: int
    error: str | None = None


class RedriveMark(BaseModel):
    state: str  # done, pending (a redrive interrupted: the next one finishes it)
    by: str
    at: datetime | None
    target_partition: int | None
    target_offset: int | None

    @classmethod
    def of(cls, r: Redrive) -> RedriveMark:
        return cls(state=r.state, by=r.redriven_by, at=r.redriven_at or r.claimed_at,
                   target_partition=r.target_partition, target_offset=r.target_offset)


class DeadLetterRow(BaseModel):
    time: str  # the dead letter's broker time, UTC
    record: dict[str, Any]  # the tap's one JSON shape of a record (TapRecord.as_json)
    redrive: RedriveMark | None


class TopicPage(BaseModel):
    topic: str
    source_topic: str
    limit: int
    where: str | None
    records: list[DeadLetterRow]
    summary: str
    can_act: bool


class OutcomeRow(BaseModel):
    position: str
    outcome: str
    message: str
    target_offset: int | None

    @classmethod
    def of(cls, o: RedriveOutcome) -> OutcomeRow:
        return cls(position=str(o.position), outcome=o.outcome, message=o.message, target_offset=o.target_offset)


class RedrivePage(BaseModel):
    topic: str
    partition: int | None
    offset: int | None
    where: str | None
    done: bool  # False: the confirm step (a dry run), True: what was sent
    matched: int
    outcomes: list[OutcomeRow]
    sent: int
    can_act: bool
    note: str = ""
    source_topic: str = ""
    # A redrive by filter: the scanned range, per partition ("0:12,1:40"), the form posts back so that only
    # what this step showed is sent; `bound` says what the scan left out, `next_from` where to go on.
    scan_from: str | None = None
    scan_to: str | None = None
    bound: str | None = None
    next_from: str | None = None


def _bad(exc: DeadLetterError) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, str(exc))


def _topic(topic: str) -> str:
    try:
        return check_topic(topic)
    except DeadLetterError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.get("/dead-letters", include_in_schema=False)
async def dead_letters_page(request: Request, console: ConsoleDep, _: OpsViewer) -> Any:
    try:
        async with console.pool.acquire() as conn:
            topics = await dead_letter_topics_now(console.settings, conn)
    except DeadLetterError as exc:
        return page(request, "dead_letters.html", DeadLettersOverview(topics=[], held=0, pending=0, error=str(exc)),
                    status_code=503)
    rows = [TopicRow(topic=t.topic, source_topic=t.source_topic, held=t.held, received=t.received,
                     redriven=t.redriven, pending=t.pending, exists=t.exists) for t in topics]
    return page(request, "dead_letters.html", DeadLettersOverview(
        topics=rows, held=sum(t.held for t in rows), pending=sum(t.pending for t in rows)))


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@router.get("/dead-letters/{topic}", include_in_schema=False)
async def topic_page(request: Request, topic: str, console: ConsoleDep, principal: OpsViewer,
                     limit: Annotated[int, Query(ge=1, le=MAX_NEWEST)] = 20, where: str | None = None) -> Any:
    where = (where or "").strip() or None
    try:
        records, summary = await asyncio.to_thread(newest, console.settings, _topic(topic), limit=limit, where=where,
                                                   codec=console.codec)
    except DeadLetterError as exc:
        raise _bad(exc) from None
    async with console.pool.acquire() as conn:
        marks = await redrives_of(conn, [Position(r.topic, r.partition, r.offset) for r in records])
    rows = [DeadLetterRow(time=_time(r.timestamp_ms), record=r.as_json(),
                          redrive=(RedriveMark.of(m) if (m := marks.get(Position(r.topic, r.partition, r.offset)))
                                   else None)) for r in records]
    return page(request, "dead_letters_topic.html", TopicPage(
        topic=topic, source_topic=source_topic_of(topic) or "", limit=limit, where=where, records=rows,
        summary=summary.message, can_act=principal.can(Permission.OPS_ACT)))


@dataclass(frozen=True)
class Chosen:
    """The dead letters a redrive is about, and for a filter the range its scan covered."""

    positions: list[Position]
    scanned_to: dict[int, int] | None = None  # the filter's scan: next offset not scanned, per partition
    bound: str | None = None  # what the scan left out, when it stopped at its bound


async def _chosen(console: Console, topic: str, partition: int | None, offset: int | None, where: str | None,
                  start: Mapping[int, int] | None = None, end: Mapping[int, int] | None = None) -> Chosen:
    if (offset is None) == (where is None):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "say which records: partition and offset of one record, "
                                                         "or a filter (where) for every record it matches")
    if offset is not None:
        if offset < 0 or (partition or 0) < 0:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "partition and offset are 0 or more")
        return Chosen([Position(topic, partition or 0, offset)])
    try:
        found, summary = await asyncio.to_thread(matching, console.settings, topic, where or "", console.codec,
                                                 start=start, end=end)
    except DeadLetterError as exc:
        raise _bad(exc) from None
    if len(found) > MAX_REDRIVE:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"the filter matches {len(found)} records, more than the page redrives at once "
                            f"({MAX_REDRIVE}); narrow it, or use `shopflow dead-letters redrive {topic} --where ...`")
    return Chosen(found, dict(summary.positions), scan_bound(summary))


def _offsets(text: str | None, name: str) -> dict[int, int] | None:
    try:
        return offsets_of(text, name)
    except DeadLetterError as exc:
        raise _bad(exc) from None


def _int(text: str | None, name: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name} is a whole number, not {text!r}") from None


@router.get("/dead-letters/{topic}/redrive", include_in_schema=False)
async def confirm_redrive(request: Request, topic: str, console: ConsoleDep, principal: OpsViewer,
                          partition: int | None = None, offset: int | None = None, where: str | None = None,
                          scan_from: Annotated[str | None, Query(alias="from")] = None) -> Any:
    """The confirm step: a dry run of the redrive (what would be sent, what was redriven already); for a
    filter, the range it scanned, which the form posts back so that the redrive sends nothing else."""
    where = (where or "").strip() or None
    start = _offsets(scan_from, "from")
    chosen = await _chosen(console, _topic(topic), partition, offset, where, start=start)
    positions = chosen.positions
    async with console.pool.acquire() as conn:
        try:
            outcomes = await redrive(console.settings, conn, positions[:CONFIRM_LISTED], redriven_by="(dry run)",
                                     dry_run=True)
        except DeadLetterError as exc:
            raise _bad(exc) from None
    note = (f"the first {CONFIRM_LISTED} of {len(positions)} are listed" if len(positions) > CONFIRM_LISTED else "")
    scanned_to = chosen.scanned_to
    return page(request, "dead_letters_redrive.html", RedrivePage(
        topic=topic, source_topic=source_topic_of(topic) or "", partition=partition, offset=offset, where=where,
        done=False, matched=len(positions), outcomes=[OutcomeRow.of(o) for o in outcomes], sent=0,
        can_act=principal.can(Permission.OPS_ACT), note=note,
        scan_from=format_offsets(start) if start else None,
        scan_to=format_offsets(scanned_to) if scanned_to is not None else None, bound=chosen.bound,
        next_from=format_offsets(scanned_to) if chosen.bound and scanned_to else None))


@router.post("/dead-letters/{topic}/redrive", include_in_schema=False)
async def do_redrive(request: Request, topic: str, console: ConsoleDep, actor: OpsActor) -> Any:
    form = await form_fields(request)
    query = request.query_params
    partition = _int(form.get("partition", query.get("partition")), "partition")
    offset = _int(form.get("offset", query.get("offset")), "offset")
    where = (form.get("where", query.get("where")) or "").strip() or None
    start = _offsets(form.get("from", query.get("from")), "from")
    end = _offsets(form.get("to", query.get("to")), "to")
    if where is not None and end is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "a redrive by filter sends only what its confirm step showed: GET "
                            f"/dead-letters/{topic}/redrive?where=... and post its `to` (the scanned range) with it")
    chosen = await _chosen(console, _topic(topic), partition, offset, where, start=start, end=end)
    positions = chosen.positions
    outcomes: list[RedriveOutcome] = []
    failure: str | None = None
    async with console.pool.acquire() as conn:
        try:
            await redrive(console.settings, conn, positions, redriven_by=actor.email, on_outcome=outcomes.append)
        except DeadLetterError as exc:
            failure = str(exc)
        # Also when it stopped half-way: what was sent is in the log.
        await audit(conn, actor=actor, action="dead-letters.redrive", target=topic, detail={
            "where": where, "from": format_offsets(start) if start else None,
            "to": format_offsets(end) if end else None, "sent": [str(o.position) for o in outcomes if o.sent],
            "refused": {str(o.position): o.outcome for o in outcomes if not o.sent}, "failure": failure})
    if failure is not None:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"{failure} ({sum(o.sent for o in outcomes)} sent before)")
    return page(request, "dead_letters_redrive.html", RedrivePage(
        topic=topic, source_topic=source_topic_of(topic) or "", partition=partition, offset=offset, where=where,
        done=True, matched=len(positions), outcomes=[OutcomeRow.of(o) for o in outcomes],
        sent=sum(o.sent for o in outcomes), can_act=True, scan_from=format_offsets(start) if start else None,
        scan_to=format_offsets(end) if end else None))
