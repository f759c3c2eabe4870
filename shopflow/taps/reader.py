"""The tap engine: read one topic by assignment, decode, mask, filter, project, and say why it stopped.

A tap joins no consumer group and commits nothing, so the agents' groups never see it: librdkafka
wants a ``group.id`` even for assign(), so each tap has a throwaway one it never joins. It reads
read_committed, as every ShopFlow consumer does: a tap shows what the agents see, never a record of
an aborted transaction. Reading an assignment delivers each partition in offset order, so a live
tail (``follow``) neither loses nor repeats a record in a burst: nothing here seeks once reading
has begun. Filters run on the masked record unless unmasking is allowed, so an expression cannot
probe personal data it could not show.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings
from shopflow.taps.decode import Masking, RecordDecoder
from shopflow.taps.filters import FilterEvalError, RecordFilter
from shopflow.taps.records import StoppedBy, TapError, TapRecord, TapSummary, TapUnavailable
from shopflow.taps.seek import (
    AtOffset,
    AtTime,
    Beginning,
    End,
    Offsets,
    PartitionRange,
    Start,
    format_offsets,
    iso,
    now_ms,
    parse_offsets,
    parse_since,
    parse_time,
    plan,
    start_of,
)
from shopflow.topologies.catalog import all_topics

__all__ = ["AtOffset", "AtTime", "Beginning", "End", "Start", "Tap", "TapRequest", "parse_offsets", "parse_since",
           "parse_time", "request_of"]

DEFAULT_MAX_SCANNED = 100_000
BATCH = 1000
_NO_BOUND = 1 << 62


# What a tap needs of ``shopflow.taps.masking.Masker`` (see ``RecordDecoder``).
Masker = Masking


@dataclass(frozen=True)
class TapRequest:
    topic: str
    partitions: Sequence[int] | None = None  # None: all
    start: Start = Beginning()
    until_ms: int | None = None
    count: int | None = None  # stop after this many results (one bound on results: there is no --limit)
    follow: bool = False
    where: str | None = None  # CEL
    fields: Sequence[str] | None = None  # dotted paths of the value to keep
    max_scanned: int | None = DEFAULT_MAX_SCANNED  # None: unbounded (request_of: the default unless following)
    mask: bool = True

    def bounded(self) -> TapRequest:
        """The request checked as the engine runs it: the scan bound and the result count at least 1."""
        for name in ("count", "max_scanned"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TapError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
        return self


def request_of(topic: str, *, partitions: Sequence[int] | None = None, from_beginning: bool = False,
               offset: str | None = None, since: str | None = None, at: str | None = None, until: str | None = None,
               count: int | None = None, follow: bool = False, where: str | None = None, fields: str | None = None,
               max_scanned: int | None = None, mask: bool = True) -> TapRequest:
    """The request of ``shopflow tap``'s options as typed (``GET /v1/taps`` takes the same as query
    parameters): the one parser of starts, ends and field lists; ``TapError`` saying what to write instead.
    ``max_scanned`` None is "not given": ``DEFAULT_MAX_SCANNED``, or no bound when following (a live tail
    is stopped by its reader); one given is kept, also when it equals the default."""
    if until is not None and count is not None:
        raise TapError("--until and --count: give one end at most")
    return TapRequest(
        topic=topic, partitions=partitions or None, start=start_of(from_beginning, offset, since, at, follow),
        until_ms=parse_time(until, "--until") if until is not None else None, count=count, follow=follow,
        where=where, fields=[f.strip() for f in fields.split(",") if f.strip()] if fields else None,
        max_scanned=max_scanned if max_scanned is not None or follow else DEFAULT_MAX_SCANNED, mask=mask,
    ).bounded()


def project(value: Any, fields: Sequence[str]) -> Any:
    """The value with only ``fields`` (dotted paths) kept, nested as they were; a path the value does not
    have is left out. Values that are not maps (text, hex, tombstones) are kept whole."""
    if not isinstance(value, Mapping):
        return value
    kept: dict[str, Any] = {}
    for path in fields:
        names = path.split(".")
        found: Any = value
        for name in names:
            if not isinstance(found, Mapping) or name not in found:
                break
            found = found[name]
        else:
            target = kept
            for name in names[:-1]:
                target = target.setdefault(name, {})
            target[names[-1]] = found
    return kept


class Tap:
    """``with Tap(settings, request) as tap: for record in tap.records(): ...``; then ``tap.summary``."""

    def __init__(self, settings: Settings, request: TapRequest, codec: AvroCodec | None = None,
                 masker: Masker | None = None, on_progress: Callable[[TapSummary], None] | None = None):
        self.settings = settings
        # called after each batch read (the CLI's progress bar): the summary's counts so far
        self.on_progress = on_progress
        self.request = request.bounded()
        self._own_registry: SchemaRegistry | None = None
        if codec is None:
            self._own_registry = SchemaRegistry(settings.registry_url)
            codec = AvroCodec(self._own_registry)
        if self.request.mask and masker is None:
            masker = default_masker(settings, codec)
        self.masker = masker if self.request.mask else None
        self.decoder = RecordDecoder(codec, self.masker)
        self.filter = RecordFilter(self.request.where) if self.request.where else None
        self.summary = TapSummary()
        self.ranges: dict[int, PartitionRange] = {}
        self.notes: list[str] = []
        self.first_filter_error: str | None = None
        self._stopped = threading.Event()
        self._consumer: Consumer | None = None
        quiet: dict[str, str | int | float | bool] = {"bootstrap.servers": settings.bootstrap_servers, "log_level": 2}
        self._admin = AdminClient(quiet)
        self._quiet = quiet

    # --- life cycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Tap:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Check the request against the topic and plan every partition's range (raises ``TapError``)."""
        partitions = self._partitions()
        offsets = Offsets(self._admin, self.request.topic, self.settings.bootstrap_servers)
        self.ranges, self.notes = plan(offsets, partitions, self.request.start, self.request.until_ms,
                                       self.request.follow)
        self.summary.positions = {p: r.position for p, r in self.ranges.items()}

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()  # commits nothing: auto-commit is off and nothing was stored
            self._consumer = None
        if self._own_registry is not None:
            self._own_registry.close()

    def stop(self) -> None:
        """End ``records()`` at the next record or poll (any thread); the summary says "interrupted"."""
        self._stopped.set()

    @property
    def expected(self) -> int | None:
        """Records to scan when the tap has fixed ends (for progress), None when following."""
        if any(r.end is None for r in self.ranges.values()):
            return None
        return sum((r.end or 0) - r.start for r in self.ranges.values())

    def _partitions(self) -> list[int]:
        topic = self.request.topic
        try:
            meta = self._admin.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as exc:
            raise TapUnavailable(f"cannot reach Kafka at {self.settings.bootstrap_servers} ({exc}); check "
                                 "`shopflow stack status`") from None
        if meta is not None and meta.error is not None and meta.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise TapUnavailable(f"{topic}: {meta.error.str()}; try again in a moment, or check "
                                 "`shopflow stack status`")
        if meta is None or meta.error is not None:
            known = ", ".join(t.name for t in all_topics())
            raise TapError(f"no topic {topic!r} on {self.settings.bootstrap_servers}. The catalog's topics: {known} "
                           "(`shopflow topics list` shows what exists)")
        existing = sorted(meta.partitions)
        asked = self.request.partitions
        start = self.request.start
        if asked is None and isinstance(start, AtOffset) and isinstance(start.offset, Mapping):
            asked = list(start.offset)  # --offset 0:42,3:17 reads those partitions
        if asked is None:
            return existing
        missing = sorted(set(asked) - set(existing))
        if missing:
            raise TapError(f"{topic} has partitions 0..{len(existing) - 1}; there is no partition "
                           f"{', '.join(str(p) for p in missing)}")
        return sorted(set(asked))

    # --- reading ----------------------------------------------------------------------------------------

    def records(self) -> Generator[TapRecord, None, None]:
        """The matching records, in offset order within each partition; ``summary`` is set when it ends
        (also when the caller stops iterating)."""
        if not self.ranges:
            self.open()
        stopped_by: StoppedBy = "end"
        try:
            todo = {p: r for p, r in self.ranges.items() if not r.done}
            if todo:
                self._consumer = Consumer(self._consumer_config())
                self._consumer.assign([TopicPartition(self.request.topic, p, r.position) for p, r in todo.items()])
                stopped_by = yield from self._read()
            elif self.request.until_ms is not None:
                stopped_by = "until"
        except (GeneratorExit, KeyboardInterrupt):
            stopped_by = "interrupted"
            raise
        finally:
            self._finish(stopped_by)

    def _consumer_config(self) -> dict[str, Any]:
        return {
            **self._quiet,
            "client.id": "shopflow-tap",
            "group.id": f"shopflow-tap-{uuid.uuid4().hex}",  # never joined (assign only), never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            # retention may remove records while a long tap reads: go on from the first one left
            "auto.offset.reset": "earliest",
        }

    def _read(self) -> Generator[TapRecord, None, StoppedBy]:
        assert self._consumer is not None
        request, summary, ranges = self.request, self.summary, self.ranges
        until = request.until_ms
        # the bounds as plain numbers: checked after every record, the check costs no call while none is hit
        most_shown = request.count if request.count is not None else _NO_BOUND
        most_scanned = request.max_scanned if request.max_scanned is not None else _NO_BOUND
        while not self._stopped.is_set():
            if all(r.done for r in ranges.values()):
                return "until" if until is not None else "end"
            batch = self._consumer.consume(BATCH, 0.2)
            for msg in batch:
                partition, offset = msg.partition() or 0, msg.offset() or 0
                part = ranges.get(partition)
                if part is None or part.done:
                    continue
                error = msg.error()
                if error is not None:
                    self._on_error(error, partition, part, offset)
                    continue
                if offset < part.position:
                    continue  # already read (never expected: nothing seeks once reading has begun)
                if (part.end is not None and offset >= part.end) or (
                        until is not None and part.end is None and msg.timestamp()[1] > until):
                    self._finish_partition(partition, part)
                    continue
                part.position, part.at_end = offset + 1, False
                summary.scanned += 1
                record = self._shown(msg)
                if record is not None:
                    summary.returned += 1
                    yield record
                if part.end is not None and part.position >= part.end:
                    self._finish_partition(partition, part)
                if summary.returned >= most_shown or summary.scanned >= most_scanned:
                    return self._bound_reached() or "end"
                if self._stopped.is_set():
                    break
            if until is not None:
                self._close_waited()
            if self.on_progress is not None:
                self.on_progress(summary)
        return "interrupted"

    def _close_waited(self) -> None:
        """Following up to a time no partition had reached: one at its end, with the clock past ``until``,
        gets no record before it any more (new records are stamped now). Checked after every batch, an empty
        one too: librdkafka tells a partition's end once, when it gets there, not again while it stays quiet."""
        if now_ms() <= (self.request.until_ms or 0):
            return
        for partition, part in self.ranges.items():
            if part.at_end and part.end is None and not part.done:
                self._finish_partition(partition, part)

    def _on_error(self, error: KafkaError, partition: int, part: PartitionRange, offset: int) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            # past any transaction markers at the end, which are never delivered
            part.position, part.at_end = max(part.position, offset), True
            if part.end is not None and part.position >= part.end:
                self._finish_partition(partition, part)
            return
        if error.retriable() or error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            return  # the client retries; a tap waits as a consumer would
        raise TapUnavailable(f"reading {self.request.topic} failed: {error.str()}; check `shopflow stack status`")

    def _finish_partition(self, partition: int, part: PartitionRange) -> None:
        part.done = True
        if self._consumer is not None:
            self._consumer.pause([TopicPartition(self.request.topic, partition)])  # fetch no more of it

    def _shown(self, msg: Message) -> TapRecord | None:
        """The record as the caller gets it, or None when the filter leaves it out."""
        record = self.decoder.decode(msg)  # masked as it is decoded when the request masks
        if self.filter is not None:
            try:
                if not self.filter.matches(record):
                    return None
            except FilterEvalError as exc:
                self.summary.filter_errors += 1
                if self.first_filter_error is None:
                    self.first_filter_error = f"partition {record.partition} offset {record.offset}: {exc}"
                return None
        if self.request.fields and record.value_format in ("avro", "json"):  # not a {"hex": ...}
            record = replace(record, value=project(record.value, self.request.fields))
        return record

    def _bound_reached(self) -> StoppedBy | None:
        request, summary = self.request, self.summary
        if request.count is not None and summary.returned >= request.count:
            return "count"
        if request.max_scanned is not None and summary.scanned >= request.max_scanned:
            return "max-scanned"
        return None

    def _finish(self, stopped_by: StoppedBy) -> None:
        summary = self.summary
        summary.stopped_by = stopped_by
        summary.positions = {p: r.position for p, r in self.ranges.items()}
        summary.message = describe(summary, self.request, self.notes, self.first_filter_error)


def describe(summary: TapSummary, request: TapRequest, notes: Sequence[str] = (),
             first_filter_error: str | None = None) -> str:
    """The summary's sentence: how much was read, what stopped it, and how to go on."""
    counts = f"{summary.scanned:,} record{'s' if summary.scanned != 1 else ''} scanned, {summary.returned:,} shown"
    go_on = f"continue with --offset {format_offsets(summary.positions)}"
    stopped: dict[StoppedBy, str] = {
        "end": f"read to the end of {request.topic} as it was when the tap started ({counts})",
        "until": f"read {request.topic} up to {iso(request.until_ms or 0)} ({counts})",
        "count": f"{counts}: the {request.count} asked for (--count); {go_on}",
        "max-scanned": f"stopped after scanning {summary.scanned:,} records (--max-scanned); "
                       f"{summary.returned:,} shown; {go_on} or raise --max-scanned",
        "interrupted": f"stopped before the end ({counts}); {go_on}",
    }
    parts = [stopped[summary.stopped_by], *notes]
    if summary.filter_errors:
        parts.append(f"--where could not be evaluated on {summary.filter_errors:,} record"
                     f"{'s' if summary.filter_errors != 1 else ''}, counted as no match (first: {first_filter_error}); "
                     "guard optional fields with has(value.field)")
    return "; ".join(parts)


def default_masker(settings: Settings, codec: AvroCodec) -> Masker:
    """The masker of the ``.avsc`` files' personal fields (shopflow/taps/masking.py), reading the marks of
    older writer schemas through the codec's registry."""
    from shopflow.taps.masking import Masker as AvscMasker

    return AvscMasker.from_settings(settings, codec)

