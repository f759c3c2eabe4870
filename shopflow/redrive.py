"""Redrive: send dead letters back to their source topic once the cause that dead-lettered them is fixed,
each at most once (the ops console's action and ``shopflow dead-letters redrive``).

Never twice. Every redrive goes through the ``dead_letter_redrives`` ledger (migration 0008), one row
per dead letter (topic, partition, offset), in two steps:

1. claim: ``INSERT ... 'pending' ON CONFLICT DO NOTHING``, committed at once, so the claim outlives a
   crash of whoever made it;
2. send: in a transaction holding the row's lock (``FOR UPDATE NOWAIT``: a second redriver of the same
   record is told it is busy, it never waits and sends it again), a row already 'done' is refused;
   else the copy is produced with the idempotent producer (``shopflow.kafka``, acks=all), and only once
   the broker acknowledged it does the row become 'done' with the copy's offset and the transaction
   commit.

Each send holds a lease (``attempted_at``, committed before producing): a later attempt on the same
row waits until that send can no longer land (``IN_FLIGHT_S``: the acknowledgement wait, then the
broker's request timeout), so a redriver whose PostgreSQL session dropped mid-send (its row lock gone
with it) is never overtaken by a second copy; the later attempt is told "busy" until then.

A crash between the two leaves a 'pending' row whose copy may or may not be on the source topic (the
process died before or after the broker took it). The next redrive of that record (``--pending``
finishes them all) first looks for the copy on the source partition from the claim's time on, by its
``redrive.of`` header: found, the row is closed with that offset and nothing is sent; not found, the
copy is sent. A crash after the send but before the commit is the same case. So a claimed record is
never lost and never sent twice.

A copy is the dead letter's key, value and original headers (its ``dlq.*`` and any earlier
``redrive.*`` ones left out), plus ``redrive.of=<dlq topic>/<partition>/<offset>`` and ``redrive.by``,
sent to the partition it was dead-lettered from: where its key lives, so the agent owning that key's
state processes it as any other record (idempotent by event id, as every input).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from shopflow import kafka
from shopflow.dead_letters import DeadLetterError, Position, Redrive, assigned_consumer, check_topic, unreachable
from shopflow.schemas.deadletter import SourceRecord, header_pairs
from shopflow.settings import Settings

REDRIVE_OF, REDRIVE_BY = "redrive.of", "redrive.by"
ACK_TIMEOUT_S = 30.0
# After a send's start, how long its copy may still land: the acknowledgement wait, then a request the
# broker had already taken when the producer gave up (librdkafka's request.timeout.ms, 30 s), with margin.
IN_FLIGHT_S = ACK_TIMEOUT_S + 30.0 + 30.0
READ_TIMEOUT_S = 30.0  # to read the dead letters asked for, or a source partition since a claim
# How far before a claim a copy may be stamped: the producer's clock is this machine's, the claim's
# PostgreSQL's; the margin keeps the search for an interrupted redrive's copy from starting too late.
CLOCK_MARGIN_MS = 60_000

Outcome = Literal["sent", "found-sent", "already-redriven", "would-send", "busy", "missing", "no-source"]


@dataclass(frozen=True)
class RedriveOutcome:
    """What a redrive did with one dead letter; ``message`` says it in a sentence."""

    position: Position
    outcome: Outcome
    source_topic: str | None = None
    target_offset: int | None = None
    previous: Redrive | None = None  # the ledger's row when it was redriven before

    @property
    def message(self) -> str:
        before = self.previous
        return {
            "sent": f"{self.position} sent back to {self.source_topic} at offset {self.target_offset}",
            "found-sent": f"{self.position} was already on {self.source_topic} at offset {self.target_offset} "
                          "(a redrive interrupted after sending it): recorded as done, not sent again",
            "already-redriven": f"{self.position} was redriven already" + (
                f" by {before.redriven_by} at {before.redriven_at:%Y-%m-%d %H:%M:%S}Z to {before.source_topic} "
                f"offset {before.target_offset}" if before and before.redriven_at else "") + "; not sent again",
            "would-send": f"{self.position} would be sent back to {self.source_topic}",
            "busy": f"{self.position} is being redriven right now, or an interrupted send of it may still land; "
                    f"run the redrive again in {IN_FLIGHT_S:.0f}s",
            "missing": f"{self.position} is not on the topic (removed by retention, or no such offset)",
            "no-source": f"{self.position} has no dlq.topic header: nothing says where it came from",
        }[self.outcome]

    @property
    def sent(self) -> bool:
        return self.outcome in ("sent", "found-sent")


@dataclass(frozen=True)
class DeadLetterCopy:
    """What goes back to the source topic for one dead letter."""

    position: Position
    source_topic: str
    source_partition: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]]


def copy_of(position: Position, message: SourceRecord, redriven_by: str) -> DeadLetterCopy | None:
    """The copy of a dead letter to send back, None when its headers do not say where it came from."""
    headers = header_pairs(message)
    origin = {k: (v or b"").decode(errors="replace") for k, v in headers if k.startswith("dlq.")}  # last wins
    source, partition = origin.get("dlq.topic"), origin.get("dlq.partition", "")
    if not source or not partition.isdigit():
        return None
    kept: list[tuple[str, str | bytes | None]] = [(k, v) for k, v in headers if not k.startswith(("dlq.", "redrive."))]
    kept += [(REDRIVE_OF, str(position).encode()), (REDRIVE_BY, redriven_by.encode())]
    key, value = message.key(), message.value()
    return DeadLetterCopy(position, source, int(partition), key.encode() if isinstance(key, str) else key,
                          value.encode() if isinstance(value, str) else value, kept)


# -- Kafka: read the dead letters, send the copies, find an interrupted redrive's copy ---------------------


def read_dead_letters(settings: Settings, positions: Sequence[Position]) -> dict[Position, Message]:
    """The raw records at these positions (all of one topic); a position the topic no longer has is absent."""
    if not positions:
        return {}
    topic = positions[0].topic
    by_partition: dict[int, set[int]] = {}
    for p in positions:
        by_partition.setdefault(p.partition, set()).add(p.offset)
    consumer = assigned_consumer(settings)
    found: dict[Position, Message] = {}
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in by_partition}
        todo = {p: {o for o in offs if ends[p][0] <= o < ends[p][1]} for p, offs in by_partition.items()}
        todo = {p: offs for p, offs in todo.items() if offs}
        if not todo:
            return found
        consumer.assign([TopicPartition(topic, p, min(offs)) for p, offs in todo.items()])
        last = {p: max(offs) for p, offs in todo.items()}
        done: set[int] = set()
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(done) < len(todo):
            if time.monotonic() > deadline:
                raise DeadLetterError(f"{topic}: records not read within {READ_TIMEOUT_S:.0f}s; "
                                      "check `shopflow stack status`")
            for msg in consumer.consume(500, 0.2):  # returns what came within 0.2 s: no wait for a full batch
                partition, offset = msg.partition(), msg.offset()
                if partition is None or offset is None or partition in done:
                    continue
                if msg.error():
                    if _at_end(msg):  # past the last record (a transaction marker is never delivered)
                        done.add(partition)
                    continue
                if offset in todo[partition]:
                    found[Position(topic, partition, offset)] = msg
                if offset >= last[partition]:
                    done.add(partition)
    except KafkaException as exc:
        raise unreachable(settings, exc) from None
    finally:
        consumer.close()
    return found


def _at_end(msg: Message) -> bool:
    error = msg.error()
    return error is not None and error.code() == KafkaError._PARTITION_EOF


class KafkaCopies:
    """Sends copies and finds them again; one idempotent producer for a whole redrive."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.producer = Producer(kafka.producer_config(settings.bootstrap_servers, "shopflow-redrive"))

    def close(self) -> None:
        self.producer.flush(ACK_TIMEOUT_S)
        self.producer.close()

    def send(self, copy: DeadLetterCopy) -> int:
        """Produce the copy and wait for the broker's acknowledgement; its offset on the source topic."""
        delivered: list[tuple[object, Message]] = []
        try:
            self.producer.produce(copy.source_topic, key=copy.key, value=copy.value, headers=copy.headers,
                                  partition=copy.source_partition,
                                  on_delivery=lambda err, msg: delivered.append((err, msg)))
            self.producer.flush(ACK_TIMEOUT_S)
        except KafkaException as exc:
            raise unreachable(self.settings, exc) from None
        if not delivered:
            self.producer.purge()  # not acknowledged: whether it landed, the next redrive finds out
            raise DeadLetterError(f"{copy.position}: the broker did not acknowledge the copy within "
                                  f"{ACK_TIMEOUT_S:.0f}s; it stays pending: run the redrive again once Kafka is up")
        err, msg = delivered[0]
        if err is not None:
            raise DeadLetterError(f"{copy.position}: sending to {copy.source_topic} failed ({err}); it stays "
                                  "pending: fix that and run the redrive again")
        return msg.offset() or 0

    def find(self, copy: DeadLetterCopy, since_ms: int) -> int | None:
        """The offset of a copy already on the source partition (stamped from ``since_ms`` on), else None."""
        tp = TopicPartition(copy.source_topic, copy.source_partition, max(since_ms - CLOCK_MARGIN_MS, 0))
        consumer = assigned_consumer(self.settings)
        mark = str(copy.position).encode()
        try:
            start = consumer.offsets_for_times([tp], timeout=10)[0].offset
            end = consumer.get_watermark_offsets(tp, timeout=10)[1]
            if start < 0 or start >= end:
                return None  # nothing stamped since the claim
            consumer.assign([TopicPartition(copy.source_topic, copy.source_partition, start)])
            deadline = time.monotonic() + READ_TIMEOUT_S
            while True:
                if time.monotonic() > deadline:
                    raise DeadLetterError(f"{copy.source_topic}: not read within {READ_TIMEOUT_S:.0f}s; "
                                          "check `shopflow stack status`")
                for msg in consumer.consume(1000, 0.2):
                    offset = msg.offset()
                    if msg.error() and _at_end(msg):
                        return None
                    if msg.error() or offset is None:
                        continue
                    if (REDRIVE_OF, mark) in (msg.headers() or []):
                        return offset
                    if offset >= end - 1:
                        return None
        except KafkaException as exc:
            raise unreachable(self.settings, exc) from None
        finally:
            consumer.close()


# -- the ledger and the redrive -------------------------------------------------------------------------

async def redrive(settings: Settings, conn: asyncpg.Connection, positions: Sequence[Position], *,
                  redriven_by: str, dry_run: bool = False,
                  on_outcome: Callable[[RedriveOutcome], None] | None = None) -> list[RedriveOutcome]:
    """Send each dead letter back to its source topic, at most once (see the module's doc). ``dry_run``:
    say what would happen, claim and send nothing. Stops at the first Kafka or ledger failure
    (``DeadLetterError``): what was sent before stays sent and recorded."""
    if not positions:
        return []
    topics = {p.topic for p in positions}
    if len(topics) != 1:
        raise DeadLetterError(f"one dead-letter topic per redrive, not {', '.join(sorted(topics))}")
    check_topic(next(iter(topics)))
    messages = await asyncio.to_thread(read_dead_letters, settings, sorted(set(positions)))
    copies = KafkaCopies(settings) if not dry_run else None
    outcomes: list[RedriveOutcome] = []
    try:
        for position in sorted(set(positions)):
            message = messages.get(position)
            copy = copy_of(position, message, redriven_by) if message is not None else None
            if message is None:
                outcome = RedriveOutcome(position, "missing")
            elif copy is None:
                outcome = RedriveOutcome(position, "no-source")
            else:
                outcome = await _redrive_one(conn, copy, redriven_by, copies)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    finally:
        if copies is not None:
            await asyncio.to_thread(copies.close)
    return outcomes


async def _redrive_one(conn: asyncpg.Connection, copy: DeadLetterCopy, redriven_by: str,
                       copies: KafkaCopies | None) -> RedriveOutcome:
    pos = copy.position
    key = (pos.topic, pos.partition, pos.offset)
    if copies is None:  # dry run
        row = await conn.fetchrow("SELECT * FROM dead_letter_redrives WHERE dlq_topic = $1 AND dlq_partition = $2 "
                                  "AND dlq_offset = $3", *key)
        if row is not None and row["state"] == "done":
            return RedriveOutcome(pos, "already-redriven", copy.source_topic, row["target_offset"], Redrive.of(row))
        return RedriveOutcome(pos, "would-send", copy.source_topic)
    claimed_now = await conn.fetchval(
        "INSERT INTO dead_letter_redrives (dlq_topic, dlq_partition, dlq_offset, source_topic, state, redriven_by) "
        "VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT DO NOTHING RETURNING true",
        *key, copy.source_topic, redriven_by)
    if not claimed_now:
        # Take the send's lease (see the module's doc), committed before anything is produced.
        try:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT *, attempted_at < now() - make_interval(secs => $4) AS lapsed FROM dead_letter_redrives "
                    "WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3 FOR UPDATE NOWAIT",
                    *key, IN_FLIGHT_S)
                if row["state"] == "done":
                    return RedriveOutcome(pos, "already-redriven", row["source_topic"], row["target_offset"],
                                          Redrive.of(row))
                if not row["lapsed"]:
                    return RedriveOutcome(pos, "busy", copy.source_topic)
                await conn.execute("UPDATE dead_letter_redrives SET attempted_at = now() WHERE dlq_topic = $1 "
                                   "AND dlq_partition = $2 AND dlq_offset = $3", *key)
        except asyncpg.LockNotAvailableError:
            return RedriveOutcome(pos, "busy", copy.source_topic)
    try:
        async with conn.transaction():
            row = await conn.fetchrow("SELECT * FROM dead_letter_redrives WHERE dlq_topic = $1 AND dlq_partition = $2 "
                                      "AND dlq_offset = $3 FOR UPDATE NOWAIT", *key)
            if row["state"] == "done":
                return RedriveOutcome(pos, "already-redriven", row["source_topic"], row["target_offset"],
                                      Redrive.of(row))
            found = None
            if not claimed_now:  # a claim left pending by an interrupted redrive: did its copy land?
                since_ms = int(row["claimed_at"].timestamp() * 1000)
                found = await asyncio.to_thread(copies.find, copy, since_ms)
            offset = found if found is not None else await asyncio.to_thread(copies.send, copy)
            await conn.execute(
                "UPDATE dead_letter_redrives SET state = 'done', redriven_at = now(), redriven_by = $4, "
                "target_partition = $5, target_offset = $6 WHERE dlq_topic = $1 AND dlq_partition = $2 "
                "AND dlq_offset = $3", *key, redriven_by, copy.source_partition, offset)
    except asyncpg.LockNotAvailableError:
        return RedriveOutcome(pos, "busy", copy.source_topic)
    return RedriveOutcome(pos, "found-sent" if found is not None else "sent", copy.source_topic, offset)
