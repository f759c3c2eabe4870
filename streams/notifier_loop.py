"""The sender process (``shopflow notifier``): consumes requests, sends each through its channel, tells the outcome.

One asyncio loop (group ``shopflow-notifier``) reads ``notifications`` (requests; the outcomes it finds
there are passed over) and ``notifications.retry``. Each channel has its own queue and its own workers
(``CHANNEL_WORKERS``), so a slow or failing channel only slows itself: when its queue holds more than
``BACKLOG_LIMIT`` requests, new ones for it are parked on the retry topic instead of waiting in memory.
A retry record waits in a timer until its ``notify.not-before`` header, holding no worker.

What ``Sender.process`` decides is then produced and acknowledged by the broker before the record
counts as done: the NotificationSent on ``notifications``, the request again on the retry topic, or
the request on ``notifications.dlq`` with ``dlq.reason``. Offsets are committed up to the first record
not done in each partition (``OffsetBook``), so a crash replays what was in flight and the ledger
answers what was finished. PostgreSQL away is waited out with backoff, never a lost request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import asyncpg
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from shopflow.db import create_pool
from shopflow.kafka import producer_config
from shopflow.launch import stop_on_signals
from shopflow.metrics import BatchFeed, expose
from shopflow.notify import preferences
from shopflow.notify.channels import Channel, Recipient, RenderedMessage, channels_from_settings
from shopflow.notify.ledger import PgLedger, recipient_of
from shopflow.notify.templates import TemplateStore
from shopflow.schemas.codec import AvroCodec, CodecError
from shopflow.schemas.deadletter import dead_letter, header_pairs
from shopflow.schemas.notifications import NotificationRequested, NotificationSent
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings
from shopflow.streams.indexer import StopSignal
from shopflow.streams.notifier import Again, Refused, RetryPolicy, Sender, Verdict
from shopflow.topologies.catalog import NOTIFICATIONS, NOTIFICATIONS_RETRY

log = logging.getLogger(__name__)

GROUP_ID = "shopflow-notifier"
CHANNEL_WORKERS = 8
BACKLOG_LIMIT = 500
COMMIT_EVERY_S = 1.0
NOT_BEFORE = "notify.not-before"
RETRYABLE = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.TooManyConnectionsError, OSError)


class PgDirectory:
    """Preferences, addresses and templates from PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, templates: TemplateStore):
        self.pool = pool
        self.templates = templates

    async def preferences(self, user_id: str) -> preferences.Preferences:
        async with self.pool.acquire() as conn:
            return await preferences.load(conn, user_id)

    async def recipient(self, user_id: str) -> Recipient:
        async with self.pool.acquire() as conn:
            return await recipient_of(conn, user_id)

    async def render(self, request: NotificationRequested) -> RenderedMessage:
        async with self.pool.acquire() as conn:
            return await self.templates.render(conn, request.template, request.channel.value, request.locale,
                                               request.params)


class OffsetBook:
    """Per partition, the records handed out and not done; the commit position is the first not done."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], set[int]] = {}
        self._next: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}

    def take(self, record: Message) -> None:
        tp = (record.topic() or "", record.partition() or 0)
        self._open.setdefault(tp, set()).add(record.offset() or 0)
        self._next[tp] = max(self._next.get(tp, 0), (record.offset() or 0) + 1)

    def done(self, record: Message) -> None:
        self._open.get((record.topic() or "", record.partition() or 0), set()).discard(record.offset() or 0)

    def due(self) -> list[TopicPartition]:
        out = []
        for tp, nxt in self._next.items():
            position = min(self._open[tp], default=nxt)
            if self._committed.get(tp) != position:
                self._committed[tp] = position
                out.append(TopicPartition(tp[0], tp[1], position))
        return out

    def forget(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            for book in (self._open, self._next, self._committed):
                book.pop((p.topic, p.partition), None)


class Acks:
    """Produces and awaits the broker's acknowledgement; one thread serves the producer's callbacks."""

    def __init__(self, producer: Producer, loop: asyncio.AbstractEventLoop):
        self.producer = producer
        self.loop = loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="notifier-acks", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        done: asyncio.Future[None] = self.loop.create_future()

        def acked(err: object, _msg: object) -> None:
            def settle() -> None:
                if done.done():
                    return
                if err is None:
                    done.set_result(None)
                else:
                    done.set_exception(KafkaException(err))
            self.loop.call_soon_threadsafe(settle)

        self.producer.produce(topic, key=key, value=value, headers=headers or [], on_delivery=acked)
        await done

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.producer.flush(10)


class Notifier:
    """The loop's state: the sender, the per-channel queues and their workers, the offsets."""

    def __init__(self, sender: Sender, codec: AvroCodec, acks: Acks, *, output_topic: str, retry_topic: str,
                 park_s: float, on_verdict: Callable[[NotificationRequested, Verdict], None] | None = None):
        self.sender = sender
        self.codec = codec
        self.acks = acks
        self.output_topic = output_topic
        self.retry_topic = retry_topic
        self.park_s = park_s
        self.on_verdict = on_verdict
        self.book = OffsetBook()
        self.queues: dict[str, asyncio.Queue[tuple[Message, NotificationRequested]]] = {
            name: asyncio.Queue() for name in sender.channels}
        self.feed = BatchFeed("notifier")

    def workers(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._work(q), name=f"notifier-{name}-{i}")
                for name, q in self.queues.items() for i in range(CHANNEL_WORKERS)]

    def take(self, record: Message) -> None:
        self.book.take(record)
        try:
            event = self.codec.decode_record(record.value() or b"")
        except CodecError as exc:
            asyncio.create_task(self._dead_letter(record, exc.reason, str(exc)))
            return
        if isinstance(event, NotificationSent) or not isinstance(event, NotificationRequested):
            self.book.done(record)
            return
        queue = self.queues.get(event.channel.value)
        if queue is None:  # a channel this sender does not have: the Sender records it skipped
            queue = next(iter(self.queues.values()))
        wait_s = (_not_before(record) - time.time() * 1000) / 1000
        if wait_s > 0:
            # Not committed while it waits: a restart reads it again and waits the rest of the time.
            asyncio.get_running_loop().call_later(wait_s, queue.put_nowait, (record, event))
        elif queue.qsize() >= BACKLOG_LIMIT:
            asyncio.create_task(self._park(record, time.time() + self.park_s, "channel busy"))
        else:
            queue.put_nowait((record, event))

    async def _work(self, queue: asyncio.Queue[tuple[Message, NotificationRequested]]) -> None:
        while True:
            record, request = await queue.get()
            started = time.perf_counter()
            verdict = await self._decide(request)
            while True:
                try:
                    await self._act(record, request, verdict)
                    break
                except KafkaException as exc:
                    log.warning("notifier: the broker did not take %s (%s); again in 1 s", request.notification_id, exc)
                    await asyncio.sleep(1)
            self.book.done(record)
            self.feed.batch(time.perf_counter() - started, {type(verdict).__name__.lower(): 1})
            if self.on_verdict is not None:
                self.on_verdict(request, verdict)

    async def _decide(self, request: NotificationRequested) -> Verdict:
        delay = 0.5
        while True:
            try:
                return await self.sender.process(request)
            except RETRYABLE as exc:  # PostgreSQL away: wait for it, the request is not lost
                log.warning("notifier: %s; retrying %s in %.1fs", exc, request.notification_id, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _act(self, record: Message, request: NotificationRequested, verdict: Verdict) -> None:
        if isinstance(verdict, Again):
            await self._park(record, verdict.not_before.timestamp(), verdict.why, done=False)
            return
        await self.acks.send(self.output_topic, request.notification_id.encode(),
                             self.codec.encode(NOTIFICATIONS, verdict.sent))
        if isinstance(verdict, Refused):
            await self._dead_letter(record, verdict.reason, verdict.sent.detail or "", done=False)

    async def _park(self, record: Message, not_before_s: float, why: str, *, done: bool = True) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            (k, v) for k, v in header_pairs(record) if k not in (NOT_BEFORE, "notify.why")]
        headers += [(NOT_BEFORE, str(int(not_before_s * 1000)).encode()), ("notify.why", why.encode()[:500])]
        await self.acks.send(self.retry_topic, _bytes(record.key()), record.value(), headers)
        if done:
            self.book.done(record)

    async def _dead_letter(self, record: Message, reason: str, detail: str, *, done: bool = True) -> None:
        letter = replace(dead_letter(record, reason, detail), topic=NOTIFICATIONS.dead_letter)
        log.warning("dead letter to %s: %s: %s", letter.topic, reason, detail)
        await self.acks.send(letter.topic, letter.key, letter.value, list(letter.headers))
        if done:
            self.book.done(record)


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _not_before(record: Message) -> float:
    """The record's not-before time in epoch ms (0: now)."""
    raw = dict(header_pairs(record)).get(NOT_BEFORE)
    try:
        return float(raw or 0)
    except ValueError:
        return 0.0


async def serve(settings: Settings, stop_event: StopSignal, *, channels: Mapping[str, Channel] | None = None,
                topic: str = NOTIFICATIONS.name, retry_topic: str = NOTIFICATIONS_RETRY.name,
                output_topic: str | None = None, group_id: str = GROUP_ID,
                retry: RetryPolicy | None = None, schema: str | None = None,
                on_verdict: Callable[[NotificationRequested, Verdict], None] | None = None) -> None:
    """Send the requests of ``topic`` and ``retry_topic`` until ``stop_event`` is set (tests pass their own
    topics, schema and channels)."""
    loop = asyncio.get_running_loop()
    retry = retry or RetryPolicy(settings.notify_attempts, settings.notify_retry_first_s, settings.notify_retry_max_s)
    channels = channels if channels is not None else channels_from_settings(settings)
    registry = SchemaRegistry(settings.registry_url)
    codec = AvroCodec(registry)
    pool = await create_pool(settings, min_size=1, max_size=4 + len(channels) * 2, schema=schema,
                             application_name="shopflow-notifier")
    sender = Sender(channels, PgLedger(pool), PgDirectory(pool, TemplateStore()), retry)
    acks = Acks(Producer(producer_config(settings.bootstrap_servers, GROUP_ID, **{"linger.ms": 2})), loop)
    notifier = Notifier(sender, codec, acks, output_topic=output_topic or topic, retry_topic=retry_topic,
                        park_s=retry.first_s, on_verdict=on_verdict)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group_id,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})

    def revoked(c: Consumer, partitions: list[TopicPartition]) -> None:
        notifier.book.forget(partitions)

    workers = notifier.workers()
    last_commit = time.monotonic()
    try:
        consumer.subscribe([topic, retry_topic], on_revoke=revoked)
        log.info("notifier: %s + %s (group %s), channels %s", topic, retry_topic, group_id, ", ".join(channels))
        while not stop_event.is_set():
            for record in await asyncio.to_thread(consumer.consume, 200, 0.2):
                err = record.error()
                if err is None:
                    notifier.take(record)
                elif err.fatal():
                    raise KafkaException(err)
            if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                last_commit = time.monotonic()
                _commit(consumer, notifier.book)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        _commit(consumer, notifier.book)
        consumer.close()
        acks.close()
        await pool.close()
        registry.close()


def _commit(consumer: Consumer, book: OffsetBook) -> None:
    due = book.due()
    if due:
        try:
            consumer.commit(offsets=due, asynchronous=False)
        except KafkaException as exc:  # a rebalance took the partition: its new owner replays from before
            log.warning("notifier: commit refused (%s); the records will be read again", exc)


def main(settings: Settings) -> None:
    """The process entry point (``shopflow notifier``): until SIGINT or SIGTERM."""
    stop = stop_on_signals()
    expose(settings, "notifier")
    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(settings, stop))

