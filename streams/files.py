"""The image agent: turns confirmed uploads into product images, and removes the objects of deleted ones.

A plain confluent-kafka consumer loop (group ``shopflow-images``) on the ``files`` topic, like the search
indexer: its work is CPU (decoding, resizing) and an external store, kept out of the saga workers' event
loop. For each ``FileUploaded`` it reads the uploaded object, has ``shopflow.images`` check it by its
bytes and clean and thumbnail it, writes the original and the thumbnails under ``images/<sku>/<id>/``,
then settles the upload in the catalog (``ProductImages.settle``: ``ImageProcessed`` and, when READY, the
product's new image list, one transaction through the outbox) and only then removes the upload object.
A refused file is settled REJECTED with its reason and removed: nothing of it is kept. ``FileDeleted``
removes an image's objects; ``ImageProcessed`` (its own output, by way of the outbox) is passed over.
It also reads ``catalog.products``: a ``ProductDeleted`` removes the objects of that product's images and
uploads in flight (``ProductImages.forget_product``), and an image settled for a product deleted while
it was processed has its objects removed at once, so no object outlives its product.

Offsets are committed only after a record's work is done. The store, PostgreSQL or the registry away is
retried with backoff, never skipped (an upload waits, it is not lost); every step is idempotent, so a
record replayed after a crash redoes the same writes. A record that cannot be decoded or whose
processing fails for another reason goes to ``files.dlq`` and the loop goes on. Every
``sweep_interval_s`` the loop also removes uploads never confirmed (``sweep``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

import asyncpg
from confluent_kafka import Consumer, KafkaException, Message, Producer
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from shopflow.catalog.images import ProductImages, event_id
from shopflow.catalog.store import Catalog
from shopflow.files import Keys, ObjectStore, StoreUnavailable
from shopflow.images import THUMBNAIL_CONTENT_TYPE, Limits, ProcessedImage, Refused, process
from shopflow.kafka import producer_config
from shopflow.launch import stop_on_signals
from shopflow.metrics import BatchFeed, expose
from shopflow.schemas.catalog import ProductDeleted, ProductUpserted
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.deadletter import DeadLetter, dead_letter, decode_record_or_dead_letter
from shopflow.schemas.files import FileDeleted, FileUploaded, ImageOutcome, ImageProcessed
from shopflow.schemas.registry import RegistryError, SchemaRegistry
from shopflow.settings import Settings
from shopflow.streams.indexer import StopSignal, _commit_offsets, _next_batch
from shopflow.topologies.catalog import CATALOG_PRODUCTS, FILES

log = logging.getLogger(__name__)

GROUP_ID = "shopflow-images"
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 10.0
SWEEP_INTERVAL_S = 60.0
# What is worth waiting for: a server away. Anything else is a fault of the record, dead-lettered.
RETRYABLE = (StoreUnavailable, RegistryError, KafkaException, asyncpg.PostgresConnectionError,
             asyncpg.InterfaceError, asyncpg.TooManyConnectionsError, OSError)
T = TypeVar("T")
R = TypeVar("R")


class Runner(Protocol):
    """Runs a coroutine to its end on the agent's event loop, from the agent's thread."""

    def __call__(self, coro: Coroutine[Any, Any, R], /) -> R: ...


def limits_of(settings: Settings) -> Limits:
    return Limits(settings.image_max_bytes, settings.image_max_pixels, settings.image_max_side)


@dataclass
class Outcome:
    """What one record came to: ready, rejected (with its reason), deleted, skipped or dead-lettered."""

    kind: str
    detail: str = ""


class ImageAgent:
    """One record at a time; ``handle`` raises a ``RETRYABLE`` error when a server is away."""

    def __init__(self, settings: Settings, store: ObjectStore, codec: AvroCodec, images: ProductImages,
                 run: Runner):
        self.settings = settings
        self.store = store
        self.codec = codec
        self.images = images
        self.limits = limits_of(settings)
        self.run = run  # runs a catalog coroutine on the agent's event loop

    def handle(self, record: Message) -> Outcome | DeadLetter:
        event, letter = decode_record_or_dead_letter(self.codec, record)
        if letter is not None:
            return letter
        try:
            if isinstance(event, FileUploaded):
                return self.upload(event)
            if isinstance(event, FileDeleted):
                removed = self.store.delete_prefix(Keys.image_prefix(event.sku, event.image_id))
                return Outcome("deleted", f"{removed} objects")
            if isinstance(event, ProductDeleted):
                return self.product_deleted(event)
            if isinstance(event, ImageProcessed | ProductUpserted):
                return Outcome("skipped")
        except RETRYABLE:
            raise
        except Exception as exc:  # a bug or a record no retry can mend: set aside, the stream goes on
            log.exception("files record %s[%s]@%s failed", record.topic(), record.partition(), record.offset())
            return dead_letter(record, "processing-failed", f"{type(exc).__name__}: {exc}")
        return dead_letter(record, "not-a-files-event", f"{type(event).__name__} is not handled on {FILES.name}")

    def upload(self, event: FileUploaded) -> Outcome:
        upload = self.run(self.images.get(event.sku, event.upload_id))
        if upload.state not in ("issued", "confirmed"):
            self.store.delete([event.key])  # settled before a crash took its removal: finish it
            return Outcome("skipped", f"already {upload.state}")
        try:
            image = process(self.store.read(event.key, self.limits.max_bytes), self.limits)
        except FileNotFoundError:
            return self._settle(event, Refused("missing", "the uploaded file is gone from the store; upload it again"))
        except Refused as refused:
            return self._settle(event, refused)
        self._write(event, image)
        return self._settle(event, image)

    def _write(self, event: FileUploaded, image: ProcessedImage) -> None:
        self.store.write(Keys.original(event.sku, event.upload_id), image.original, image.content_type)
        for size, data in image.thumbnails.items():
            self.store.write(Keys.thumbnail(event.sku, event.upload_id, size), data, THUMBNAIL_CONTENT_TYPE)

    def _settle(self, event: FileUploaded, result: ProcessedImage | Refused) -> Outcome:
        common: dict[str, Any] = {"event_id": event_id("ImageProcessed", event.upload_id), "sku": event.sku,
                                  "image_id": event.upload_id, "occurred_at": datetime.now(UTC)}
        if isinstance(result, Refused):
            processed = ImageProcessed(outcome=ImageOutcome.REJECTED, reason=result.reason, detail=result.detail,
                                       **common)
            outcome = Outcome("rejected", result.reason)
        else:
            processed = ImageProcessed(outcome=ImageOutcome.READY, format=result.format, width=result.width,
                                       height=result.height, thumbnail_sizes=tuple(result.thumbnails), **common)
            outcome = Outcome("ready", f"{result.width}x{result.height}")
        settled = self.run(self.images.settle(processed))
        if settled.discard:  # its product (or the image) was deleted meanwhile: keep nothing of it
            self.store.delete_prefix(Keys.image_prefix(event.sku, event.upload_id))
            outcome = Outcome("discarded", "its product was deleted")
        self.store.delete([event.key])  # after the outcome is committed: a crash before it redoes the work
        return outcome

    def product_deleted(self, event: ProductDeleted) -> Outcome:
        forgotten = self.run(self.images.forget_product(
            event.sku, deleted_at=event.occurred_at, remove_objects=partial(self._remove, event.sku)))
        return Outcome("product-deleted", f"{forgotten} images")

    async def _remove(self, sku: str, upload_ids: list[str]) -> None:
        """Every object of these uploads of ``sku``: the upload itself, the image and its thumbnails."""
        def remove() -> None:
            for upload_id in upload_ids:
                self.store.delete_prefix(Keys.image_prefix(sku, upload_id))
            self.store.delete([Keys.incoming(u) for u in upload_ids])

        await asyncio.to_thread(remove)


async def sweep(store: ObjectStore, images: ProductImages, *, older_than: timedelta) -> int:
    """Remove the objects of uploads never confirmed (expired more than ``older_than`` ago) and mark them
    swept; returns how many. The object goes first: a sweep cut short leaves a row to sweep again."""

    async def remove(upload_ids: list[str]) -> None:
        await asyncio.to_thread(store.delete, [Keys.incoming(u) for u in upload_ids])

    swept = await images.sweep(remove, older_than=older_than)
    if swept:
        log.info("swept %d uploads never confirmed", swept)
    return swept


def run(settings: Settings, stop_event: StopSignal, *, topic: str = FILES.name,
        products_topic: str = CATALOG_PRODUCTS.name, group_id: str = GROUP_ID,
        on_record: Callable[[Outcome | DeadLetter], None] | None = None,
        sweep_interval_s: float = SWEEP_INTERVAL_S) -> None:
    """Consume ``topic`` (``files``) and ``products_topic`` (for ``ProductDeleted``; tests give throwaway
    ones) until ``stop_event`` is set; each record is committed once its work is done."""
    loop = asyncio.new_event_loop()
    registry = SchemaRegistry(settings.registry_url)
    codec = AvroCodec(registry)
    catalog = loop.run_until_complete(Catalog.open(settings, codec, topic=products_topic, cache=False, pool_size=2))
    images = ProductImages(catalog, files_topic=topic)
    store = ObjectStore(settings)
    producer = Producer(producer_config(settings.bootstrap_servers, "shopflow-images", **{"linger.ms": 5}))
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group_id,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    agent = ImageAgent(settings, store, codec, images, loop.run_until_complete)
    feed = BatchFeed("images")
    last_sweep = 0.0

    def sweep_now() -> int:
        return loop.run_until_complete(sweep(store, images,
                                             older_than=timedelta(seconds=settings.upload_sweep_after_s)))

    try:
        loop.run_until_complete(images.warm())
        consumer.subscribe([topic, products_topic])
        log.info("image agent: %s, %s (group %s) -> bucket %s", topic, products_topic, group_id,
                 settings.object_store_bucket)
        while not stop_event.is_set():
            if time.monotonic() - last_sweep >= sweep_interval_s:
                last_sweep = time.monotonic()
                _until_done(sweep_now, stop_event)
            for record in _next_batch(consumer, 1):
                started = time.perf_counter()
                result = _until_done(partial(_deliver, agent, record, producer), stop_event)
                if result is None:
                    return  # stopped before the record went through: not committed, replayed next time
                consumer.commit(offsets=_commit_offsets([record]), asynchronous=False)
                feed.batch(time.perf_counter() - started,
                           {result.kind if isinstance(result, Outcome) else "dead-lettered": 1})
                if on_record is not None:
                    on_record(result)
    finally:
        consumer.close()
        producer.flush(10)
        loop.run_until_complete(catalog.close())
        loop.close()
        registry.close()


def _deliver(agent: ImageAgent, record: Message, producer: Producer) -> Outcome | DeadLetter:
    """The record handled; a dead letter produced and flushed before the record is committed."""
    result = agent.handle(record)
    if isinstance(result, DeadLetter):
        log.warning("dead letter to %s: %s", result.topic, result.detail)
        producer.produce(result.topic, key=result.key, value=result.value, headers=list(result.headers))
        if producer.flush(30):
            raise StoreUnavailable(f"dead letter to {result.topic} not delivered; retrying")
    return result


def _until_done(step: Callable[[], T], stop_event: StopSignal) -> T | None:
    """``step()`` retried with backoff while a server is away; None if stopped meanwhile."""

    def failed(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("image agent: %s; retrying in %.1fs", error, delay)

    def pause(seconds: float) -> None:
        stop_event.wait(seconds)  # a stop cuts the wait short

    retrying = Retrying(retry=retry_if_exception_type(RETRYABLE), stop=lambda _s: stop_event.is_set(),
                        wait=wait_exponential(multiplier=RETRY_FIRST_S, max=RETRY_MAX_S),
                        sleep=pause, before_sleep=failed, retry_error_callback=lambda _s: None)
    result: T | None = retrying(step)
    return result


def main(settings: Settings) -> None:
    """The process entry point (``shopflow images``): until SIGINT or SIGTERM."""
    stop = stop_on_signals()
    expose(settings, "images")
    run(settings, stop)
