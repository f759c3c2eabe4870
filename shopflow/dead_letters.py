"""Dead letters for the people who run ShopFlow: what each dead-letter topic holds and its newest records
decoded (through the tap engine), with the redrives the ledger has of them. Used by the ops console and
``shopflow dead-letters``; sending a record back to its source topic is ``shopflow.redrive``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.deadletter import source_topic_of
from shopflow.settings import Settings
from shopflow.taps.reader import DEFAULT_MAX_SCANNED, AtOffset, Beginning, Tap, TapRequest, parse_offsets
from shopflow.taps.records import TapError, TapRecord, TapSummary
from shopflow.taps.seek import format_offsets
from shopflow.topologies.catalog import dead_letter_topics

MAX_NEWEST = 500  # the most records one look at a dead-letter topic shows


class DeadLetterError(Exception):
    """A dead-letter request that cannot be done as asked; the message says what to do instead."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a dead letter is: its dead-letter topic, partition and offset (the ledger's key)."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:  # the redrive.of header's value and how messages name a dead letter
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class DeadLetterTopic:
    """One dead-letter topic: records it holds now (log end minus log start: retention removes old
    ones), records it ever received (its log end, the monitor's ``shopflow_dead_letter_records``),
    and its redrives as the ledger has them."""

    topic: str
    source_topic: str
    held: int
    received: int
    redriven: int = 0
    pending: int = 0
    exists: bool = True


@dataclass(frozen=True)
class Redrive:
    """A ledger row: a dead letter claimed for redrive ('pending') or sent back ('done', with where to)."""

    position: Position
    source_topic: str
    state: Literal["pending", "done"]
    redriven_by: str
    claimed_at: datetime
    redriven_at: datetime | None = None
    target_partition: int | None = None
    target_offset: int | None = None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Redrive:
        return cls(Position(row["dlq_topic"], row["dlq_partition"], row["dlq_offset"]), row["source_topic"],
                   row["state"], row["redriven_by"], row["claimed_at"], row["redriven_at"],
                   row["target_partition"], row["target_offset"])


def check_topic(topic: str) -> str:
    """``topic`` when it names a dead-letter topic, else ``DeadLetterError`` listing the catalog's."""
    if source_topic_of(topic) is None:
        known = ", ".join(t.name for t in dead_letter_topics())
        raise DeadLetterError(f"{topic!r} is not a dead-letter topic; the catalog's: {known}")
    return topic


def assigned_consumer(settings: Settings) -> Consumer:
    return Consumer({"bootstrap.servers": settings.bootstrap_servers, "log_level": 2,
                     "group.id": f"shopflow-dead-letters-{uuid.uuid4().hex}",  # assign only: never joined
                     "enable.auto.commit": False, "isolation.level": "read_committed",
                     "enable.partition.eof": True})


def unreachable(settings: Settings, exc: Exception) -> DeadLetterError:
    return DeadLetterError(f"cannot reach Kafka at {settings.bootstrap_servers} ({exc}); check `shopflow stack status`")


# -- what the dead-letter topics hold -------------------------------------------------------------------


def watermarks(settings: Settings, topics: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """(log start, log end) of every partition of each topic that exists."""
    consumer = assigned_consumer(settings)
    try:
        known = consumer.list_topics(timeout=10).topics
        return {t: [consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                    for p in sorted(known[t].partitions)]
                for t in topics if t in known and known[t].error is None}
    except KafkaException as exc:
        raise unreachable(settings, exc) from None
    finally:
        consumer.close()


async def dead_letter_topics_now(settings: Settings, conn: asyncpg.Connection,
                                 topics: Sequence[str] | None = None) -> list[DeadLetterTopic]:
    """Every dead-letter topic of the catalog (or ``topics``) with its counts, read now."""
    names = list(topics) if topics is not None else [t.name for t in dead_letter_topics()]
    marks = await asyncio.to_thread(watermarks, settings, names)
    ledger = {(r["dlq_topic"], r["state"]): r["n"] for r in await conn.fetch(
        "SELECT dlq_topic, state, count(*) AS n FROM dead_letter_redrives WHERE dlq_topic = ANY($1::text[]) "
        "GROUP BY dlq_topic, state", names)}
    return [DeadLetterTopic(name, source_topic_of(name) or "", sum(hi - lo for lo, hi in marks.get(name, [])),
                            sum(hi for _, hi in marks.get(name, [])), ledger.get((name, "done"), 0),
                            ledger.get((name, "pending"), 0), name in marks)
            for name in names]


def newest(settings: Settings, topic: str, *, limit: int = 20, where: str | None = None,
           codec: AvroCodec | None = None, max_scanned: int | None = None) -> tuple[list[TapRecord], TapSummary]:
    """The newest ``limit`` records of a dead-letter topic (newest first), decoded and masked by the tap
    engine, with the original record's reason and origin (``TapRecord.dead_letter``). Without a filter
    only the last ``limit`` of each partition are read; with one (CEL, the tap's) the topic is scanned
    from its start, up to the tap's scan bound, keeping the last matches."""
    check_topic(topic)
    if not 1 <= limit <= MAX_NEWEST:
        raise DeadLetterError(f"limit is 1..{MAX_NEWEST}, not {limit}")
    if where:
        request = TapRequest(topic, where=where, max_scanned=max_scanned or DEFAULT_MAX_SCANNED)
    else:
        ends = watermarks(settings, [topic]).get(topic)
        if ends is None:
            return [], TapSummary(message=f"{topic} does not exist yet: nothing was dead-lettered there")
        request = TapRequest(topic, start=AtOffset({p: max(lo, hi - limit) for p, (lo, hi) in enumerate(ends)}))
    kept: deque[TapRecord] = deque(maxlen=limit)
    try:
        with Tap(settings, request, codec=codec) as tap:
            kept.extend(tap.records())
    except TapError as exc:
        raise DeadLetterError(str(exc)) from None
    records = sorted(kept, key=lambda r: (r.timestamp_ms, r.offset), reverse=True)
    return records, tap.summary


def matching(settings: Settings, topic: str, where: str, codec: AvroCodec | None = None,
             max_scanned: int | None = None, *, start: Mapping[int, int] | None = None,
             end: Mapping[int, int] | None = None) -> tuple[list[Position], TapSummary]:
    """The positions of every record of a dead-letter topic the filter (CEL, the tap's) matches, from
    ``start`` (per partition; default: the beginning), and the scan's summary: its ``positions`` are where
    it stopped per partition, the topic's end unless ``stopped_by`` is "max-scanned".

    ``end`` (per partition, exclusive; a partition not named: none of it) holds the scan to the range a
    confirm step showed, so a redrive never sends a record that arrived after it, nor one it did not
    scan; such a scan has no record-count bound (its range is the bound)."""
    check_topic(topic)
    request = TapRequest(topic, start=AtOffset(dict(start)) if start else Beginning(), where=where,
                         max_scanned=None if end is not None else max_scanned or DEFAULT_MAX_SCANNED)
    try:
        with Tap(settings, request, codec=codec) as tap:
            if end is not None:
                _hold_to(tap, end)
            found = [Position(topic, r.partition, r.offset) for r in tap.records()]
    except TapError as exc:
        raise DeadLetterError(str(exc)) from None
    if end is not None:  # the engine already stops there; this keeps the promise whatever it does
        found = [p for p in found if p.offset < end.get(p.partition, 0)]
    return found, tap.summary


def offsets_of(text: str | None, name: str) -> dict[int, int] | None:
    """A scanned range's ends as a confirm step or a dry run writes them (``0:12,1:40``); None when not
    given; ``DeadLetterError`` for anything else."""
    if not text:
        return None
    try:
        parsed = parse_offsets(text).offset
    except TapError:
        parsed = None
    if not isinstance(parsed, Mapping):
        raise DeadLetterError(f"{name} is partition:offset pairs such as 0:12,1:40, not {text!r}")
    return dict(parsed)


def scan_bound(summary: TapSummary) -> str | None:
    """What a filter's scan left out, in a sentence, when it stopped at its bound; None when it read the
    topic to its end (the caller adds how to go on from ``summary.positions``)."""
    if summary.stopped_by != "max-scanned":
        return None
    return (f"the scan stopped at its bound of {summary.scanned:,} records, at offsets "
            f"{format_offsets(summary.positions)}: only the matches before them are redriven, the rest of "
            "the topic was not looked at")


def _hold_to(tap: Tap, end: Mapping[int, int]) -> None:
    """End each partition's planned range at ``end`` (never past the topic's end as the tap found it)."""
    for partition, planned in tap.ranges.items():
        limit = end.get(partition, planned.start)
        planned.end = max(min(limit, planned.end if planned.end is not None else limit), planned.start)
        planned.done = planned.position >= planned.end


async def redrives_of(conn: asyncpg.Connection, positions: Iterable[Position]) -> dict[Position, Redrive]:
    """The ledger's rows for these dead letters (the page marks them redriven or pending)."""
    wanted = list(positions)
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT r.* FROM dead_letter_redrives r JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS w(t, p, o) "
        "ON r.dlq_topic = w.t AND r.dlq_partition = w.p AND r.dlq_offset = w.o",
        [p.topic for p in wanted], [p.partition for p in wanted], [p.offset for p in wanted])
    return {(r := Redrive.of(row)).position: r for row in rows}


async def pending(conn: asyncpg.Connection, topic: str) -> list[Position]:
    """The dead letters of a topic claimed by a redrive that did not finish."""
    rows = await conn.fetch("SELECT dlq_partition, dlq_offset FROM dead_letter_redrives "
                            "WHERE dlq_topic = $1 AND state = 'pending' ORDER BY 1, 2", topic)
    return [Position(topic, r["dlq_partition"], r["dlq_offset"]) for r in rows]
