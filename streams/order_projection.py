"""The orders read model: a consumer of the ``orders`` topic that keeps ``orders_view`` in PostgreSQL.

OrderPlaced, OrderConfirmed and OrderCancelled become one row per order (status, lines, total,
cancel reason, timestamps), which the edge serves for ``GET /v1/orders``. ``shopflow projection``
runs it; any number of copies can run in one consumer group (partitions spread across them).
``shopflow projection rebuild`` (``streams.projection_rebuild``) fills a shadow copy with the same
``handle``/``apply`` and swaps it in.

Guarantees, without Kafka transactions:
- each event is applied once: its ``event_id`` goes into ``orders_view_events`` in the same
  transaction as the row change, and an id already there is skipped (redelivery, replays);
- status only moves forward (PENDING < CONFIRMED < CANCELLED/REFUNDED, ``ORDER_STATUS_RANK``, derived
  from the saga in ``topologies.orders``), so an event arriving late or replayed never takes an order back;
- offsets are committed only after the batch is in PostgreSQL (at least once + idempotent = once);
- a record that cannot be decoded or applied goes to the dead-letter topic through
  ``decode_or_dead_letter`` (with its origin and reason) and the stream goes on;
- every applied change NOTIFYs ``ORDERS_VIEW_CHANNEL`` with the order id, which wakes the edge's
  ``GET /v1/orders/{id}?wait=`` readers;
- ``shopflow projection`` restarts it from the committed offsets after a failure, with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from confluent_kafka import Consumer, KafkaError, Message, Producer
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type, wait_exponential

from shopflow.db import connect, migrate
from shopflow.kafka import producer_config
from shopflow.metrics import BatchFeed, expose
from shopflow.schemas import load_schema
from shopflow.schemas.codec import AvroCodec, CodecError
from shopflow.schemas.deadletter import DeadLetter, dead_letter, decode_or_dead_letter
from shopflow.schemas.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from shopflow.settings import Settings
from shopflow.topologies.catalog import ORDERS
from shopflow.topologies.orders import ORDER_STATUS_RANK, ORDERS_VIEW_CHANNEL
from shopflow.topologies.saga import CANCELLED, CONFIRMED, PENDING, REFUNDED

log = logging.getLogger(__name__)

GROUP_ID = "shopflow-order-projection"
# Failures after which a run starts again from the committed offsets (PostgreSQL or the broker away,
# dead letters not delivered); the wait between runs doubles from 1 s up to 30 s.
RESTARTABLE = (OSError, asyncpg.PostgresError, RuntimeError)
HANDLED = {cls.AVRO_NAME: cls for cls in (OrderPlaced, OrderConfirmed, OrderCancelled)}


@dataclass(frozen=True, slots=True)
class Change:
    """What one event does to its order's row."""

    event_id: str
    order_id: str
    user_id: str
    status: str
    occurred_at: datetime
    lines: list[dict[str, Any]] | None = None
    total_minor: int | None = None
    currency: str | None = None
    reason: str | None = None
    detail: str | None = None
    payment_id: str | None = None


def change_of(event: OrderPlaced | OrderConfirmed | OrderCancelled) -> Change:
    """The row change an event makes (pure; the projection's whole business logic)."""
    if isinstance(event, OrderPlaced):
        return Change(event.event_id, event.order_id, event.user_id, PENDING, event.occurred_at,
                      lines=[line.to_avro() for line in event.lines],
                      total_minor=event.total.amount_minor, currency=event.total.currency)
    if isinstance(event, OrderConfirmed):
        return Change(event.event_id, event.order_id, event.user_id, CONFIRMED, event.occurred_at,
                      total_minor=event.total.amount_minor, currency=event.total.currency,
                      payment_id=event.payment_id)
    if isinstance(event, OrderCancelled):
        return Change(event.event_id, event.order_id, event.user_id,
                      REFUNDED if event.refunded else CANCELLED, event.occurred_at,
                      reason=event.reason.value, detail=event.detail)
    raise TypeError(f"not an orders event: {type(event).__name__}")


@dataclass(frozen=True, slots=True)
class ViewTables:
    """Where changes are written: the live read model, or the shadow copy a rebuild fills
    (``streams.projection_rebuild``). Only the live tables' changes are NOTIFYed: no one reads a shadow."""

    view: str = "orders_view"
    events: str = "orders_view_events"
    notifies: bool = True

    def __post_init__(self) -> None:
        # Table names are spliced into the statements (identifiers cannot be parameters): plain ones only.
        for name in (self.view, self.events):
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
                raise ValueError(f"not a plain table name: {name!r}")


LIVE_TABLES = ViewTables()


@functools.cache
def statements(tables: ViewTables) -> tuple[str, str]:
    """The mark (event applied once) and the upsert (status forward only) of one change, for ``tables``."""
    mark = (f"INSERT INTO {tables.events} (event_id, order_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING 1")
    # One statement for every event: fields an event does not carry are NULL and keep what the row has;
    # status, reason and detail change only when the status moves forward.
    upsert = f"""
INSERT INTO {tables.view} AS v (order_id, user_id, status, status_rank, lines, total_minor, currency, reason,
                              detail, payment_id, created_at, updated_at, last_event_id)
VALUES ($1, $2, $3, $4, COALESCE($5::jsonb, '[]'::jsonb), $6, $7, $8, $9, $10, $11, $11, $12)
ON CONFLICT (order_id) DO UPDATE SET
    status      = CASE WHEN EXCLUDED.status_rank > v.status_rank THEN EXCLUDED.status ELSE v.status END,
    reason      = CASE WHEN EXCLUDED.status_rank > v.status_rank THEN EXCLUDED.reason
                       ELSE COALESCE(v.reason, EXCLUDED.reason) END,
    detail      = CASE WHEN EXCLUDED.status_rank > v.status_rank THEN EXCLUDED.detail
                       ELSE COALESCE(v.detail, EXCLUDED.detail) END,
    status_rank = GREATEST(v.status_rank, EXCLUDED.status_rank),
    lines       = CASE WHEN v.lines = '[]'::jsonb THEN EXCLUDED.lines ELSE v.lines END,
    total_minor = COALESCE(v.total_minor, EXCLUDED.total_minor),
    currency    = COALESCE(v.currency, EXCLUDED.currency),
    payment_id  = COALESCE(v.payment_id, EXCLUDED.payment_id),
    created_at  = LEAST(v.created_at, EXCLUDED.created_at),
    updated_at  = GREATEST(v.updated_at, EXCLUDED.updated_at),
    last_event_id = EXCLUDED.last_event_id
"""
    return mark, upsert


async def apply(conn: asyncpg.Connection, change: Change, tables: ViewTables = LIVE_TABLES) -> bool:
    """Apply one change in its own transaction (a savepoint inside the caller's); False when its event
    was applied before."""
    mark, upsert = statements(tables)
    async with conn.transaction():
        if await conn.fetchval(mark, change.event_id, change.order_id) is None:
            return False
        await conn.execute(
            upsert, change.order_id, change.user_id, change.status, ORDER_STATUS_RANK[change.status], change.lines,
            change.total_minor, change.currency, change.reason, change.detail, change.payment_id,
            change.occurred_at, change.event_id,
        )
        if tables.notifies:
            await conn.execute("SELECT pg_notify($1, $2)", ORDERS_VIEW_CHANNEL, change.order_id)
    return True


def record_name(codec: AvroCodec, value: bytes | None) -> str | None:
    """The full name of the record's writer schema, or None when the header or id is not usable."""
    if value is None:
        return None
    try:
        schema = codec.registry.schema_by_id(codec.schema_id(value))
    except CodecError:
        return None
    if not isinstance(schema, dict) or "name" not in schema:
        return None
    name = schema["name"]
    return name if "." in name or "namespace" not in schema else f"{schema['namespace']}.{name}"


def consumer_config(settings: Settings, group_id: str) -> dict[str, object]:
    """How the orders topic is read into the read model, live or by a rebuild: offsets committed by hand."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Events the orders agent wrote in an aborted Kafka transaction never reach the read model.
        "isolation.level": "read_committed",
    }


class OrderProjection:
    def __init__(self, settings: Settings, codec: AvroCodec, *, topic: str = ORDERS.name, group_id: str = GROUP_ID,
                 batch_size: int = 500):
        self.settings = settings
        self.codec = codec
        self.topic = topic
        self.group_id = group_id
        self.batch_size = batch_size
        self.counts = {"applied": 0, "duplicate": 0, "dead-lettered": 0}

    async def handle(self, conn: asyncpg.Connection, msg: Message,
                     tables: ViewTables = LIVE_TABLES) -> DeadLetter | None:
        """Apply one record to ``tables``; the dead letter to produce when it cannot be decoded or applied."""
        name = record_name(self.codec, msg.value())
        reader = load_schema(name) if name in HANDLED else None
        decoded, letter = decode_or_dead_letter(self.codec, msg, reader)
        if decoded is None:  # then it says why
            return letter
        if name not in HANDLED:
            return dead_letter(msg, "unexpected-record", f"{name} is not an orders event this projection reads")
        try:
            change = change_of(HANDLED[name].from_avro(decoded))
        except (KeyError, TypeError, ValueError) as exc:
            return dead_letter(msg, "unprocessable", f"{name}: {exc!r}")
        try:
            applied = await apply(conn, change, tables)
        except asyncpg.DataError as exc:  # e.g. a NUL byte in a string: this record can never be stored
            return dead_letter(msg, "unprocessable", f"{name}: {exc}")
        self.counts["applied" if applied else "duplicate"] += 1
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set. Errors reaching PostgreSQL or Kafka propagate (restart from offsets)."""
        conn = await connect(self.settings, application_name=GROUP_ID)
        consumer = Consumer(consumer_config(self.settings, self.group_id))
        dlq = Producer(producer_config(self.settings.bootstrap_servers, GROUP_ID))
        try:
            await migrate(conn)
            consumer.subscribe([self.topic])
            feed = BatchFeed("orders-view")
            while not stop.is_set():
                messages = await asyncio.to_thread(consumer.consume, self.batch_size, 0.5)
                if not messages:
                    continue
                started, before = time.perf_counter(), dict(self.counts)
                failures: list[str] = []

                def delivered(err: KafkaError | None, _msg: Message, failures: list[str] = failures) -> None:
                    if err is not None:
                        failures.append(str(err))

                for msg in messages:
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer error on %s: %s", self.topic, error)
                        continue
                    letter = await self.handle(conn, msg)
                    if letter is not None:
                        self.counts["dead-lettered"] += 1
                        log.warning("dead letter from %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(),
                                    dict(letter.headers).get("dlq.reason"))
                        headers: list[tuple[str, str | bytes | None]] = list(letter.headers)
                        dlq.produce(letter.topic, key=letter.key, value=letter.value, headers=headers,
                                    on_delivery=delivered)
                # Dead letters are on the broker before the offsets that skip their records are committed.
                await asyncio.to_thread(dlq.flush, 30)
                if failures:
                    raise RuntimeError(f"dead letters not delivered: {failures[0]}")
                await asyncio.to_thread(consumer.commit, asynchronous=False)
                feed.batch(time.perf_counter() - started, {k: n - before[k] for k, n in self.counts.items()})
        finally:
            await asyncio.to_thread(consumer.close)
            dlq.flush(5)
            await conn.close()


def main(settings: Settings | None = None) -> None:
    """``shopflow projection``: run until SIGINT/SIGTERM, restarting after a failure (from committed offsets)."""
    from shopflow.schemas.registry import SchemaRegistry
    from shopflow.settings import get_settings

    settings = settings or get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    expose(settings, "projection")

    async def forever() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        registry = SchemaRegistry(settings.registry_url)
        projection = OrderProjection(settings, AvroCodec(registry))
        log.info("order projection: %s -> orders_view (group %s)", projection.topic, projection.group_id)

        async def pause(seconds: float) -> None:  # cut short by a stop signal
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)

        def failed(state: RetryCallState) -> None:
            log.error("order projection stopped: %s; restarting in %.0fs",
                      state.outcome.exception() if state.outcome else None, state.upcoming_sleep)

        restarts = AsyncRetrying(retry=retry_if_exception_type(RESTARTABLE), wait=wait_exponential(max=30),
                                 stop=lambda _state: stop.is_set(), sleep=pause, before_sleep=failed)
        try:
            async for attempt in restarts:
                with attempt:
                    await projection.run(stop)
        except RetryError:  # stopped while waiting to restart
            pass
        registry.close()
        log.info("order projection stopped: %s", projection.counts)

    asyncio.run(forever())
