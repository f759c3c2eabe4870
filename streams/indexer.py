"""The search indexer: keeps the OpenSearch product index in step with ``catalog.products``.

A plain confluent-kafka consumer loop (group ``shopflow-search-indexer``) rather than a Faust agent:
it writes to an external store in bulk and commits offsets by hand, only after OpenSearch has
acknowledged the batch (durable in its translog), so a crash replays the batch instead of losing it.
It does not wait for a refresh: the index refreshes every 250 ms by itself, and waiting
(``refresh=wait_for``) holds every batch for up to a refresh interval, queueing the next ones behind
it under load (in the CDC benchmark it pushed p50 to 1.7 s).

Replays and duplicates change nothing: a ``ProductUpserted`` is indexed and a ``ProductDeleted``
deleted with ``version_type=external`` and the event's ``version``, so OpenSearch itself refuses a
write whose version is not above the one it holds (a version conflict means "already newer": go on).
A record that cannot be decoded, is not a catalog event, or whose document the index refuses goes to
the dead-letter topic (``<topic>.dlq``) and the loop goes on. After a batch, the Redis product cache
is fenced for every sku it touched (``shopflow.catalog.cache.invalidate_cached_products``). A batch
that fails (OpenSearch, the broker or the registry away) is retried with backoff (tenacity), never skipped.

New skus reaching the inventory with zero stock is the inventory agent's job (it listens to
``catalog.products`` itself). The other way round, ``run_stock`` feeds each sku's available units from
the inventory table's changelog into the index for the in-stock filter; ``shopflow indexer`` runs both.
``shopflow search rebuild`` (``streams/search_rebuild.py``) replays the same two inputs through the same
decoding and writes (``Indexer.index`` and ``stock_level``) into a new index.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_incrementing,
)

from shopflow.catalog.cache import invalidate_cached_products
from shopflow.catalog.search import SearchError
from shopflow.catalog.search_index import (
    DEFAULT_INDEX,
    Delete,
    Outcome,
    ProductSearch,
    StockLevel,
    Upsert,
    Write,
    product_document,
)
from shopflow.kafka import producer_config
from shopflow.metrics import BatchFeed, expose
from shopflow.schemas.catalog import ProductDeleted, ProductUpserted
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.deadletter import DeadLetter, SourceRecord, dead_letter, decode_or_dead_letter, header_pairs
from shopflow.schemas.registry import RegistryError, SchemaRegistry
from shopflow.settings import Settings
from shopflow.tables import INVENTORY_TABLE, changelog_topic
from shopflow.tables.values import is_reservation_key
from shopflow.topologies.catalog import CATALOG_PRODUCTS

log = logging.getLogger(__name__)

GROUP_ID = "shopflow-search-indexer"
STOCK_GROUP_ID = "shopflow-search-stock"
BATCH_SIZE = 500
INVALIDATE_ATTEMPTS = 3
# A failed batch is tried again after 0.5 s, then twice as long each time up to 10 s, until it goes through.
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 10.0
_EVENT_TYPES = {"ProductUpserted": ProductUpserted, "ProductDeleted": ProductDeleted}


class InvalidEvent(ValueError):
    """A decodable record that is not a catalog event this indexer can apply."""


def event_type(record: SourceRecord, value: dict[str, Any]) -> type[ProductUpserted] | type[ProductDeleted]:
    """The record type, from the ``event_type`` header the outbox router sets (or the value's shape)."""
    header = next((v for k, v in header_pairs(record) if k == "event_type"), None)
    if header is not None:
        name = header.decode(errors="replace").strip('"')
        if name not in _EVENT_TYPES:
            raise InvalidEvent(f"event_type {name!r} is not a catalog product event")
        return _EVENT_TYPES[name]
    return ProductUpserted if "name" in value else ProductDeleted


def to_write(record: SourceRecord, value: dict[str, Any]) -> Write:
    kind = event_type(record, value)
    try:
        event = kind.from_avro(value)
        if isinstance(event, ProductUpserted):
            return Upsert(event.sku, event.version, product_document(event))
        return Delete(event.sku, event.version)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:  # fields missing or of the wrong type
        raise InvalidEvent(f"not a valid {kind.__name__}: {exc}") from None


@dataclass
class BatchResult:
    applied: int = 0
    stale: int = 0  # duplicates and late events the index already had newer
    dead_letters: list[DeadLetter] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)  # sku -> highest version seen in the batch


class Indexer:
    """Applies batches of catalog records to the index; ``process_batch`` is the whole of one step."""

    def __init__(self, search: ProductSearch, codec: AvroCodec, *, cache: redis.Redis | None = None,
                 dead_letters: Producer | None = None, refresh: str | bool = False):
        self.search = search
        self.codec = codec
        self.cache = cache
        self.dead_letters = dead_letters
        # False in production (see the module docstring); tests may ask for "wait_for".
        self.refresh = refresh

    def process_batch(self, records: Sequence[SourceRecord]) -> BatchResult:
        """Index, dead-letter and invalidate one batch. Raises ``SearchError`` / ``KafkaException`` on a
        failure worth retrying; the batch may then be processed again as a whole (it is idempotent)."""
        result = self.index(records)
        self._send_dead_letters(result.dead_letters)
        self._invalidate(result.versions)
        return result

    def index(self, records: Sequence[SourceRecord]) -> BatchResult:
        """Decode and apply one batch, and nothing else: its dead letters are returned, not sent."""
        result = BatchResult()
        writes: list[Write] = []
        sources: list[SourceRecord] = []
        for record in records:
            value, letter = decode_or_dead_letter(self.codec, record)
            if letter is not None or value is None:  # a value or a dead letter, never neither
                result.dead_letters.extend([letter] if letter is not None else [])
                continue
            try:
                writes.append(to_write(record, value))
            except InvalidEvent as exc:
                result.dead_letters.append(dead_letter(record, "not-a-catalog-event", str(exc)))
                continue
            sources.append(record)
        outcomes = self.search.apply(writes, refresh=self.refresh)
        for record, write, outcome in zip(sources, writes, outcomes, strict=True):
            if outcome.outcome is Outcome.REJECTED:
                result.dead_letters.append(dead_letter(record, "index-rejected", outcome.detail))
                continue
            if outcome.outcome is Outcome.APPLIED:
                result.applied += 1
            else:
                result.stale += 1
            result.versions[write.sku] = max(write.version, result.versions.get(write.sku, 0))
        return result

    def _send_dead_letters(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        if self.dead_letters is None:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "dead letters but no producer to send them"))
        failures: list[str] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(f"{msg.topic()}: {err}")

        for letter in letters:
            log.warning("dead letter to %s: %s", letter.topic, letter.detail)
            headers: list[tuple[str, str | bytes | None]] = list(letter.headers)
            self.dead_letters.produce(letter.topic, key=letter.key, value=letter.value, headers=headers,
                                      on_delivery=delivered)
        remaining = self.dead_letters.flush(30)
        if remaining or failures:
            # Not committed: the batch comes back and its poison is dead-lettered again.
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT,
                                            f"dead letters not delivered ({remaining} pending): {failures}"))

    def _invalidate(self, versions: dict[str, int]) -> None:
        if self.cache is None or not versions:
            return
        # A few tries, then go on: holding the index back on a Redis outage would make search stale
        # too, while a cache entry that missed its fence is still bounded by its TTL.
        def failed(state: RetryCallState) -> None:
            log.warning("product cache invalidation failed (attempt %d): %s", state.attempt_number, _error(state))

        def gave_up(state: RetryCallState) -> None:
            log.error("product cache not invalidated for %d sku(s) (%s); entries expire with their TTL",
                      len(versions), _error(state))

        Retrying(retry=retry_if_exception_type(redis.RedisError), stop=stop_after_attempt(INVALIDATE_ATTEMPTS),
                 wait=wait_incrementing(start=0.2, increment=0.2), before_sleep=failed,
                 retry_error_callback=gave_up)(invalidate_cached_products, self.cache, versions)


def _error(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


def _commit_offsets(records: Sequence[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for m in records:
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        if topic is None or partition is None or offset is None:  # not a consumed record: nothing to commit
            continue
        last[(topic, partition)] = max(last.get((topic, partition), -1), offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


class StopSignal(Protocol):
    """A threading.Event or a multiprocessing Event."""

    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


def run(settings: Settings, stop_event: StopSignal, *, topic: str = CATALOG_PRODUCTS.name,
        index: str = DEFAULT_INDEX, group_id: str = GROUP_ID, refresh: str | bool = False,
        batch_size: int = BATCH_SIZE, on_batch: Callable[[BatchResult], None] | None = None) -> None:
    """Consume ``topic`` into ``index`` until ``stop_event`` is set.

    Offsets are committed after each batch is applied; a failing batch is retried with backoff
    (never skipped) until it goes through or the loop is stopped.
    """
    search = ProductSearch.connect(settings, index)
    registry = SchemaRegistry(settings.registry_url)
    cache = redis.Redis.from_url(settings.redis_url)
    producer = Producer(producer_config(settings.bootstrap_servers, "shopflow-indexer", **{"linger.ms": 5}))
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers, "group.id": group_id,
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        # Should Connect run with exactly-once source support, aborted records never reach the index.
        "isolation.level": "read_committed",
    })
    indexer = Indexer(search, AvroCodec(registry), cache=cache, dead_letters=producer, refresh=refresh)
    try:
        search.ensure_index()
        consumer.subscribe([topic])
        log.info("search indexer: %s -> index %s (group %s)", topic, index, group_id)
        feed = BatchFeed("search-products")
        while not stop_event.is_set():
            batch = _next_batch(consumer, batch_size)
            if not batch:
                continue
            started = time.perf_counter()
            result = _apply_until_done(indexer, batch, stop_event)
            if result is None:  # stopped before the batch went through: not committed, replayed next time
                break
            try:
                consumer.commit(offsets=_commit_offsets(batch), asynchronous=False)
            except KafkaException as exc:
                # Partitions moved to another member meanwhile: it replays them, idempotently.
                log.warning("offset commit failed (%s); the batch will be replayed", exc)
            feed.batch(time.perf_counter() - started, {"applied": result.applied, "stale": result.stale,
                                                       "dead-lettered": len(result.dead_letters)})
            if on_batch is not None:
                on_batch(result)
    finally:
        consumer.close()
        producer.flush(10)
        cache.close()
        registry.close()
        search.close()


def _apply_until_done(indexer: Indexer, batch: list[Message], stop_event: StopSignal) -> BatchResult | None:
    """The batch applied, retried with backoff on a failure worth retrying; None if stopped meanwhile."""

    def failed(state: RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("batch of %d not applied, retrying in %.1fs: %s", len(batch), delay, _error(state))

    def pause(seconds: float) -> None:
        stop_event.wait(seconds)  # a stop cuts the wait short

    retrying = Retrying(
        retry=retry_if_exception_type((SearchError, KafkaException, RegistryError)),
        stop=lambda _state: stop_event.is_set(),
        wait=wait_exponential(multiplier=RETRY_FIRST_S, max=RETRY_MAX_S),
        sleep=pause,
        before_sleep=failed,
        retry_error_callback=lambda _state: None,
    )
    result: BatchResult | None = retrying(indexer.process_batch, batch)
    return result


def _next_batch(consumer: Consumer, batch_size: int) -> list[Message]:
    # Wait for the first record only, then take what is already fetched: consume(n, timeout) would
    # hold a lone update back for the whole timeout waiting for n records.
    first = consumer.poll(0.5)
    if first is None:
        return []
    batch = [first, *consumer.consume(batch_size - 1, timeout=0)] if batch_size > 1 else [first]
    good = []
    for m in batch:
        err = m.error()
        if err is None:
            good.append(m)
        elif err.fatal():
            raise KafkaException(err)
        else:
            log.warning("consumer: %s", err)
    return good


def run_stock(settings: Settings, stop_event: StopSignal, *, topic: str | None = None,
              index: str = DEFAULT_INDEX, group_id: str = STOCK_GROUP_ID, refresh: str | bool = False) -> None:
    """Feed each sku's available units from the inventory table's changelog into the index (in-stock filter).

    A sku always lands on the same changelog partition, so the record's offset is a version that
    only grows for that sku: a replayed or late record cannot put back an older count.
    """
    search = ProductSearch.connect(settings, index)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group_id,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        search.ensure_index()
        consumer.subscribe([topic or changelog_topic(INVENTORY_TABLE)])
        feed = BatchFeed("search-stock")
        while not stop_event.is_set():
            batch = _next_batch(consumer, BATCH_SIZE)
            started = time.perf_counter()
            levels = [level for level in map(stock_level, batch) if level is not None]
            outcomes: Counter[str] = Counter()
            for level, outcome in zip(levels, search.apply(levels, refresh=refresh), strict=True):
                outcomes[outcome.outcome.value] += 1
                if outcome.outcome is Outcome.REJECTED:
                    log.warning("stock of %s refused by the index: %s", level.sku, outcome.detail)
            if batch:
                consumer.commit(offsets=_commit_offsets(batch), asynchronous=False)
                feed.batch(time.perf_counter() - started, outcomes)
    finally:
        consumer.close()
        search.close()


def stock_level(msg: Message) -> StockLevel | None:
    """A sku's available units from an inventory changelog record, versioned by the record's offset;
    None for an order line's reservation row (the sku's own record carries its counts) or a bad record."""
    key, value, offset = msg.key(), msg.value(), msg.offset()
    if key is None or value is None or offset is None or is_reservation_key(key.decode()):
        return None
    try:
        state = json.loads(value)
        available = int(state["on_hand"]) - int(state["reserved"])
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("stock record %s[%d]@%d skipped: %s", msg.topic(), msg.partition(), offset, exc)
        return None
    return StockLevel(key.decode(), offset + 1, available)


def main(settings: Settings) -> None:
    """The process entry point (``shopflow indexer``): products and stock, until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    expose(settings, "indexer")
    stock = threading.Thread(target=run_stock, args=(settings, stop), name="stock-feed", daemon=True)
    stock.start()
    run(settings, stop)
    stock.join(10)
