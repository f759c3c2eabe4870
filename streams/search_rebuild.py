"""Rebuilding the product search index from the indexer's own inputs while searches go on answering.

``shopflow search rebuild``: a read model can always be made again from its log. A new generation of
the index (``products-<UTC stamp>``) is filled from the compacted ``catalog.products`` topic and the
inventory table's changelog, the live indexer's two inputs, through its own decoding and writes
(``Indexer.index``, ``stock_level``, ``ProductSearch.apply``), so the index keeps one writer's rules.
Then the alias ``products`` is pointed at it in one atomic ``_aliases`` call and the old generation is
deleted: readers see the old index until the switch and the new one after it, never neither.

The topics are read with an assignment of their own (no consumer group, nothing committed: the live
indexer's offsets are untouched), in phases:

- copy: from the beginning to the end offsets seen at the start (the new index does not refresh meanwhile);
- catch-up: to the end offsets seen after the copy (what arrived during it); then a refresh;
- switch: the alias moves; a concrete index of that name (a stack from before the alias) goes in the same call;
- final catch-up: to the end offsets seen after the switch, for what the live indexer wrote to the old
  index between the catch-up and the switch.

A record written both here and by the live indexer is harmless: every write carries an external version
(the event's version, the changelog offset + 1), so the second is a version conflict (STALE) and changes
nothing. Nothing is read from the old index, so a red one (a lost shard) is repaired as well. A failure
before the switch deletes the new index and leaves the alias as it was.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from shopflow.catalog.search import InvalidQuery, SearchError
from shopflow.catalog.search_index import DEFAULT_INDEX, Generations, Outcome, ProductSearch, generation_name
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.registry import RegistryError, SchemaRegistry
from shopflow.settings import Settings
from shopflow.streams.indexer import Indexer, stock_level
from shopflow.tables import INVENTORY_TABLE, changelog_topic
from shopflow.topologies.catalog import CATALOG_PRODUCTS

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_SIZE = 2000
# Short of a partition's end with nothing read for this long: the broker is away or the end is not reachable.
STALL_S = 60.0
PREFETCH_KB = 8192
# Bulk requests in flight: OpenSearch applies one to a shard on one thread, so a second keeps another core busy.
WRITERS = 2
# A batch the index or the registry failed is tried again for up to this long before the rebuild gives up.
RETRY_FOR_S = 60.0


class Phase(StrEnum):
    COPY = "copy"
    CATCH_UP = "catch-up"
    SWITCH = "switch"
    FINAL = "final catch-up"
    DONE = "done"


class RebuildError(RuntimeError):
    """The rebuild cannot go on; the message says what to do next."""


class SwitchedUnfinished(RebuildError):
    """The alias points at the new index already, but the final catch-up did not finish."""


@dataclass
class SourceCount:
    """What one input topic gave the rebuild so far."""

    topic: str
    read: int = 0
    indexed: int = 0
    stale: int = 0  # the new index held that version already (the live indexer wrote it too)
    skipped: int = 0  # not indexable: poison the live indexer dead-lettered, reservation rows, refused docs
    end: int = 0  # records below the latest end offsets (an upper bound: compaction leaves gaps)


@dataclass
class Rebuild:
    """A rebuild's progress, and its report once done."""

    alias: str
    index: str
    products: SourceCount
    stock: SourceCount
    phase: Phase = Phase.COPY
    replaced: Generations | None = None  # what the alias stood for just before the switch
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started


Progress = Callable[[Rebuild], None]


class SourceReader:
    """One topic read from its beginning without a consumer group, up to end offsets given per phase."""

    def __init__(self, settings: Settings, topic: str, *, required: bool):
        self.topic = topic
        self.count = SourceCount(topic)
        # A group id only because the client wants one: partitions are assigned, nothing is committed.
        config = {"bootstrap.servers": settings.bootstrap_servers, "enable.auto.commit": False,
                  "group.id": f"shopflow-search-rebuild-{uuid.uuid4().hex}", "enable.auto.offset.store": False}
        self.consumer = Consumer({**config, "enable.partition.eof": True,
                                  # as the live indexer: aborted records never reach the index
                                  "isolation.level": "read_committed",
                                  # Both sources' clients prefetch from the start, each up to this much
                                  # (64 MB by default), while one is read: that, not the batches, is the
                                  # command's memory.
                                  "queued.max.messages.kbytes": PREFETCH_KB})
        # End offsets from a client of their own: on the reading one, the request would queue behind the
        # fetch it has waiting at the broker (up to fetch.wait.max.ms, for every partition asked).
        self.offsets = Consumer(config)
        self._broker = settings.bootstrap_servers
        try:
            meta = self._kafka(lambda: self.offsets.list_topics(topic, timeout=10)).topics.get(topic)
            found = meta is not None and meta.error is None
            if not found and required:
                raise RebuildError(f"topic {topic} does not exist on {self._broker}; create the catalog's topics "
                                   "with `shopflow topics apply`, or name the topic to rebuild from with --topic")
            self.partitions = sorted(meta.partitions) if found and meta is not None else []
            self.next = {p: low for p, (low, _) in self._watermarks().items()}  # the next offset to read
            self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])
        except BaseException:
            self.close()
            raise

    def _kafka(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except KafkaException as exc:
            raise RebuildError(f"Kafka at {self._broker} did not answer ({exc.args[0]}); "
                               "is it up (`shopflow stack status`, `shopflow stack up`)?") from None

    def _watermarks(self) -> dict[int, tuple[int, int]]:
        def low_high(partition: int) -> tuple[int, int]:
            low, high = self.offsets.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)
            return low, high

        return {p: self._kafka(functools.partial(low_high, p)) for p in self.partitions}

    def ends(self) -> dict[int, int]:
        """Each partition's end offset now, with the record count below them noted for progress."""
        marks = self._watermarks()
        self.count.end = max(self.count.read, sum(high - low for low, high in marks.values()))
        return {p: high for p, (_, high) in marks.items()}

    def read_to(self, ends: dict[int, int], batch_size: int) -> Iterator[list[Message]]:
        """Batches of records until every partition is read to ``ends`` (records past them may come too)."""
        pending = {p for p, end in ends.items() if self.next[p] < end}
        last_read = time.monotonic()
        while pending:
            batch = []
            # Wait for the first record only, then take what is fetched already: consume(n, timeout) would
            # sit out its whole timeout at a partition's end waiting for n.
            first = self.consumer.poll(0.5)
            arrived = [] if first is None else [first, *self.consumer.consume(batch_size - 1, 0)]
            for msg in arrived:
                partition, offset, err = msg.partition(), msg.offset(), msg.error()
                if partition is None or offset is None:
                    continue
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    if err.fatal():
                        raise RebuildError(f"reading {self.topic} failed: {err}; check `shopflow stack status`")
                    log.warning("reading %s: %s", self.topic, err)
                    continue
                # At an end (EOF) the offset is where it stands; past a record, the one after it.
                self.next[partition] = max(self.next[partition], offset if err is not None else offset + 1)
                if err is None:
                    batch.append(msg)
            pending = {p for p in pending if self.next[p] < ends[p]}
            if batch:
                last_read = time.monotonic()
                self.count.read += len(batch)
                yield batch
            elif time.monotonic() - last_read > STALL_S:
                behind = {p: f"{self.next[p]}/{ends[p]}" for p in sorted(pending)}
                raise RebuildError(f"{self.topic}: nothing read for {STALL_S:.0f}s short of the end (partition: "
                                   f"offset/end {behind}); is Kafka up (`shopflow stack status`)?")

    def close(self) -> None:
        self.consumer.close()
        self.offsets.close()


@dataclass(frozen=True, slots=True)
class _Applied:
    indexed: int
    stale: int
    skipped: int


class _Filling:
    """The new generation being filled from both sources, ``WRITERS`` bulk requests in flight, reporting
    after every batch. Batches may land out of order: versions, not arrival, decide what stays."""

    def __init__(self, state: Rebuild, target: ProductSearch, codec: AvroCodec, batch_size: int,
                 on_progress: Progress | None):
        self.state, self.target, self.batch_size = state, target, batch_size
        self.indexer = Indexer(target, codec)
        self.on_progress = on_progress or (lambda _state: None)
        self.retrying = Retrying(
            retry=retry_if_exception(_worth_retrying),
            stop=stop_after_delay(RETRY_FOR_S), wait=wait_exponential(multiplier=0.5, max=10), reraise=True,
            before_sleep=lambda s: log.warning("batch not applied, retrying: %s",
                                               s.outcome.exception() if s.outcome else None))

    def enter(self, phase: Phase) -> None:
        self.state.phase = phase
        self.on_progress(self.state)

    def read(self, phase: Phase, products: SourceReader, stock: SourceReader) -> None:
        self.enter(phase)
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="rebuild-bulk") as writers:
            for reader, apply in ((products, self._products), (stock, self._stock)):
                in_flight: deque[Future[_Applied]] = deque()
                for batch in reader.read_to(reader.ends(), self.batch_size):
                    if len(in_flight) == WRITERS:
                        self._count(in_flight.popleft().result(), reader.count)
                    in_flight.append(writers.submit(self.retrying, apply, batch))
                while in_flight:
                    self._count(in_flight.popleft().result(), reader.count)

    def _count(self, applied: _Applied, count: SourceCount) -> None:
        count.indexed += applied.indexed
        count.stale += applied.stale
        count.skipped += applied.skipped
        self.on_progress(self.state)

    def _products(self, batch: list[Message]) -> _Applied:
        result = self.indexer.index(batch)
        # Dead letters are counted only: the live indexer sent them when it met them.
        return _Applied(result.applied, result.stale, len(result.dead_letters))

    def _stock(self, batch: list[Message]) -> _Applied:
        levels = [level for level in map(stock_level, batch) if level is not None]
        outcomes = [r.outcome for r in self.target.apply(levels)]
        return _Applied(outcomes.count(Outcome.APPLIED), outcomes.count(Outcome.STALE),
                        len(batch) - len(levels) + outcomes.count(Outcome.REJECTED))


def rebuild(settings: Settings, *, alias: str = DEFAULT_INDEX, topic: str = CATALOG_PRODUCTS.name,
            stock_topic: str | None = None, batch_size: int = BATCH_SIZE, on_progress: Progress | None = None,
            now: datetime | None = None) -> Rebuild:
    """Rebuild the index behind ``alias`` from ``topic`` and the stock changelog; the finished report.

    Raises ``RebuildError``, or ``SearchError`` / ``RegistryError`` (OpenSearch or the registry away),
    each saying what to do next; the alias is then as it was, except after ``SwitchedUnfinished``.
    """
    live = ProductSearch.connect(settings, alias)
    registry = SchemaRegistry(settings.registry_url)
    readers: list[SourceReader] = []
    try:
        products = SourceReader(settings, topic, required=True)
        readers.append(products)
        stock = SourceReader(settings, stock_topic or changelog_topic(INVENTORY_TABLE), required=False)
        readers.append(stock)
        live.generations()  # OpenSearch answers, before anything is made
        target = live.create_generation(generation_name(alias, now or datetime.now(UTC)))
        state = Rebuild(alias, target.index, products.count, stock.count)
        try:
            filling = _Filling(state, target, AvroCodec(registry), batch_size, on_progress)
            filling.read(Phase.COPY, products, stock)
            filling.read(Phase.CATCH_UP, products, stock)
            target.loaded()
            filling.enter(Phase.SWITCH)
            state.replaced = replaced = live.generations()
            live.switch_to(replaced, target.index)
        except BaseException:
            _drop_unused(target)
            raise
        try:
            filling.read(Phase.FINAL, products, stock)
            target.refresh()
        except (RebuildError, SearchError, RegistryError) as exc:
            raise SwitchedUnfinished(
                f"{alias} now points at {target.index}, but the final catch-up failed ({exc}); the live "
                "indexer (`shopflow indexer`) writes what arrives from now on: once the cause is fixed, run "
                "`shopflow search rebuild` again for the few records in between") from None
        finally:
            # After the final catch-up, not at the switch: searches that resolved the alias just before it
            # are given the catch-up's time to finish on the old generation.
            old = () if replaced.concrete else tuple(i for i in replaced.indices if i != target.index)
            live.delete_generations(old)
        state.finished = time.monotonic()
        filling.enter(Phase.DONE)
        return state
    finally:
        for reader in readers:
            reader.close()
        registry.close()
        live.close()


def _worth_retrying(exc: BaseException) -> bool:
    """OpenSearch or the registry failing or away; not a request OpenSearch refused as such."""
    return isinstance(exc, SearchError | RegistryError) and not isinstance(exc, InvalidQuery)


def _drop_unused(target: ProductSearch) -> None:
    try:
        target.delete_index()
    except Exception as exc:  # noqa: BLE001 - the rebuild's own failure is the one to report
        log.error("the unfinished index %s was not deleted (%s); delete it with "
                  "`curl -X DELETE <search url>/%s`", target.index, exc, target.index)

