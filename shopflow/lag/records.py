"""The next record a group would get, read from the broker: whether there is one, and how old it is.

Both halves of a lag need it. Offset lag: a read_committed consumer placed at the committed offset
answers whether any record it would deliver lies before the last stable offset (markers and aborted
records are skipped by the client, so "none" means caught up). Time lag: that record's timestamp, as
klag-exporter does, instead of kafka-lag-exporter's interpolation over the log end's history, which
is wrong for idle and bursty topics (its issues #37, #121, #496).

What is read is kept: the first deliverable record at or after an offset never changes once it lies
below the last stable offset, so a stalled group costs one read, not one per sample. A record that
cannot be read (retention or compaction removed it, or the read timed out) is estimated from the
offsets and timestamps seen so far on the partition, and the answer says so.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger(__name__)

# Reads are batched: one assignment per sample, every partition that needs a look at once.
READ_TIMEOUT_S = 3.0
CACHE_ENTRIES = 20_000
POINTS_PER_PARTITION = 64

Partition = tuple[str, int]


@dataclass(frozen=True)
class Found:
    """The first record a read_committed consumer gets at or after the asked offset."""

    offset: int
    timestamp_ms: int | None


@dataclass(frozen=True)
class NothingBefore:
    """No deliverable record from the asked offset up to ``end`` (the last stable offset when read)."""

    end: int


Read = Found | NothingBefore


@dataclass(frozen=True)
class NextRecord:
    """What the lag needs to know about the record a group would get next."""

    deliverable_before: int | None  # its offset, or None when there is none (or it could not be told)
    known: bool  # False: the read timed out, nothing is known
    timestamp_ms: int | None
    estimated: bool  # the timestamp is an estimate: that record could not be read


def kafka_reason(exc: KafkaException) -> str:
    """The broker's or the client's words for ``exc``."""
    error = exc.args[0] if exc.args else exc
    return error.str() if isinstance(error, KafkaError) else str(error)


class RecordClock:
    """Reads next records with one read_committed consumer of its own (assign only: it joins no group
    and commits nothing), and remembers what it read."""

    def __init__(self, bootstrap_servers: str, client_id: str = "shopflow-lag"):
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap_servers, "client.id": client_id,
            # Required by the client, never used: nothing is subscribed or committed.
            "group.id": f"{client_id}-reader", "enable.auto.commit": False, "enable.auto.offset.store": False,
            "isolation.level": "read_committed", "enable.partition.eof": True,
            # A record per partition is wanted: the broker still sends a whole batch, but no more. (A small
            # queued.min.messages instead starves every partition but the first few: 3 s for 12 of them.)
            "max.partition.fetch.bytes": 4096, "fetch.wait.max.ms": 50,
            "auto.offset.reset": "earliest", "log_level": 2,
        })
        self.reads: OrderedDict[tuple[str, int, int], Read] = OrderedDict()
        # Per partition, (offset, timestamp) pairs seen, sorted: what estimates are interpolated from.
        self.points: dict[Partition, list[tuple[int, int]]] = {}

    def close(self) -> None:
        self.consumer.close()

    def next_records(self, asked: dict[Partition, tuple[int, int, int]],
                     timeout_s: float = READ_TIMEOUT_S) -> dict[Partition, NextRecord]:
        """For each partition, ``(committed, first offset still on the log, last stable offset)``: the
        record a read_committed consumer at the committed offset would get next."""
        start: dict[Partition, int] = {}
        for part, (committed, first, stable) in asked.items():
            start[part] = max(committed, first)
            cached = self.reads.get((*part, start[part]))
            if isinstance(cached, NothingBefore) and cached.end < stable:
                start[part] = cached.end  # read on from where nothing was found
        todo = {part: at for part, at in start.items() if self._cached(part, at, asked[part][2]) is None}
        try:
            fresh = self._read(todo, timeout_s) if todo else {}
        except KafkaException as exc:  # as a read that timed out: lags to the last stable offset, ages guessed
            log.warning("consumer lag: reading the next records failed (%s); their ages are estimated until a "
                        "read succeeds (check `shopflow stack status`)", kafka_reason(exc))
            fresh = {}
        answers = {}
        for part, (committed, first, stable) in asked.items():
            read = fresh.get(part) or self._cached(part, start[part], stable)
            if read is not None:
                self._remember(part, max(committed, first), read)
            answers[part] = self._next(part, committed, first, stable, read)
        return answers

    def _cached(self, part: Partition, at: int, stable: int) -> Read | None:
        read = self.reads.get((*part, at))
        if isinstance(read, NothingBefore) and read.end < stable:
            return None  # records arrived since: look again from its end
        return read

    def _remember(self, part: Partition, at: int, read: Read) -> None:
        self.reads[(*part, at)] = read
        self.reads.move_to_end((*part, at))
        while len(self.reads) > CACHE_ENTRIES:
            self.reads.popitem(last=False)
        if isinstance(read, Found) and read.timestamp_ms is not None:
            points = self.points.setdefault(part, [])
            point = (read.offset, read.timestamp_ms)
            if point not in points:
                bisect.insort(points, point)
                del points[:-POINTS_PER_PARTITION]

    def _next(self, part: Partition, committed: int, first: int, stable: int, read: Read | None) -> NextRecord:
        if read is None:  # not read in time: the lag is counted to the last stable offset, its age guessed
            return NextRecord(None, False, self.estimate(part, committed), True)
        if isinstance(read, NothingBefore) or read.offset >= stable:
            return NextRecord(None, True, None, False)
        # Retention removed the record at the committed offset: the first one left is younger than it.
        removed = committed < first
        stamp = self.estimate(part, committed) if removed else read.timestamp_ms
        return NextRecord(read.offset, True, stamp, removed or stamp is None)

    def estimate(self, part: Partition, offset: int) -> int | None:
        """The timestamp a record at ``offset`` had, interpolated between the nearest records seen around
        it; past the ones seen, the nearest one's (which makes the age a lower bound)."""
        points = self.points.get(part, [])
        if not points:
            return None
        i = bisect.bisect_left(points, (offset, -1))
        if i == 0:
            return points[0][1]
        if i == len(points):
            return points[-1][1]
        (o1, t1), (o2, t2) = points[i - 1], points[i]
        return int(t1 + (t2 - t1) * (offset - o1) / (o2 - o1)) if o2 != o1 else t1

    def _read(self, start: dict[Partition, int], timeout_s: float) -> dict[Partition, Read]:
        """One look at every partition of ``start`` at once: the first record or the end of each."""
        assigned = [TopicPartition(topic, p, at) for (topic, p), at in start.items()]
        self.consumer.assign(assigned)
        # A partition paused by an earlier read stays paused through unassign and assign (librdkafka).
        self.consumer.resume(assigned)
        found: dict[Partition, Read] = {}
        deadline = time.monotonic() + timeout_s
        try:
            while len(found) < len(start) and time.monotonic() < deadline:
                for msg in self.consumer.consume(1000, 0.1):
                    part = (msg.topic() or "", msg.partition() or 0)
                    if part not in start or part in found:
                        continue
                    error = msg.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        continue  # retried by the client; an unreadable partition times out as unknown
                    offset = msg.offset() or 0
                    if error is not None:
                        found[part] = NothingBefore(offset)
                    else:
                        kind, stamp = msg.timestamp()
                        found[part] = Found(offset, None if kind == TIMESTAMP_NOT_AVAILABLE else stamp)
                    self.consumer.pause([TopicPartition(*part)])
        finally:
            self.consumer.unassign()
        return found
