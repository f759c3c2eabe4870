"""The orders read model: a consumer of the ``orders`` topic that keeps ``orders_view`` in PostgreSQL.

OrderPlaced, OrderConfirmed and OrderCancelled become one row per order (status, lines, total,
cancel reason, timestamps), which the edge serves for ``GET /v1/orders``. ``shopflow projection``
runs it; any number of copies can run in one consumer group (partitions spread across them).

Guarantees, without Kafka transactions:
- each event is applied once: its ``event_id`` goes into ``orders_view_events`` in the same
  transaction as the row change, and an id already there is skipped (redelivery, replays);
- status only moves forward (PENDING < CONFIRMED < CANCELLED/REFUNDED, ``STATUS_RANK``), so an
  event arriving late or replayed never takes an order back;
- offsets are committed only after the batch is in PostgreSQL (at least once + idempotent = once);
- a record that cannot be decoded or applied goes to the dead-letter topic through
  ``decode_or_dead_letter`` (with its origin and reason) and the stream goes on;
- every applied change NOTIFYs ``shopflow_orders_view`` with the order id, which wakes the edge's
  ``GET /v1/orders/{id}?wait=`` readers.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from confluent_kafka import Consumer, KafkaError, Message, Producer

from shopflow.schemas import load_schema
from shopflow.schemas.codec import AvroCodec, CodecError
from shopflow.schemas.deadletter import DeadLetter, dead_letter, decode_or_dead_letter
from shopflow.schemas.records import OrderCancelled, OrderConfirmed, OrderPlaced
from shopflow.settings import Settings
from shopflow.topologies.catalog import ORDERS

log = logging.getLogger(__name__)

GROUP_ID = "shopflow-order-projection"
NOTIFY_CHANNEL = "shopflow_orders_view"
STATUS_RANK: Mapping[str, int] = {"PENDING": 1, "CONFIRMED": 2, "CANCELLED": 3, "REFUNDED": 3}
# Statuses after which nothing more happens to an order (CONFIRMED can still become REFUNDED).
FINAL_STATUSES = frozenset({"CANCELLED", "REFUNDED"})
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
        return Change(event.event_id, event.order_id, event.user_id, "PENDING", event.occurred_at,
                      lines=[line.to_avro() for line in event.lines],
                      total_minor=event.total.amount_minor, currency=event.total.currency)
    if isinstance(event, OrderConfirmed):
        return Change(event.event_id, event.order_id, event.user_id, "CONFIRMED", event.occurred_at,
                      total_minor=event.total.amount_minor, currency=event.total.currency,
                      payment_id=event.payment_id)
    if isinstance(event, OrderCancelled):
        return Change(event.event_id, event.order_id, event.user_id,
                      "REFUNDED" if event.refunded else "CANCELLED", event.occurred_at,
                      reason=event.reason.value, detail=event.detail)
    raise TypeError(f"not an orders event: {type(event).__name__}")


_MARK = "INSERT INTO orders_view_events (event_id, order_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1"
# One statement for every event: fields an event does not carry are NULL and keep what the row has;
# status, reason and detail change only when the status moves forward.
_UPSERT = """
INSERT INTO orders_view AS v (order_id, user_id, status, status_rank, lines, total_minor, currency, reason,
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


async def apply(conn: asyncpg.Connection, change: Change) -> bool:
    """Apply one change in its own transaction; False when its event was applied before."""
    async with conn.transaction():
        if await conn.fetchval(_MARK, change.event_id, change.order_id) is None:
            return False
        await conn.execute(
            _UPSERT, change.order_id, change.user_id, change.status, STATUS_RANK[change.status], change.lines,
            change.total_minor, change.currency, change.reason, change.detail, change.payment_id,
            change.occurred_at, change.event_id,
        )
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, change.order_id)
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


class OrderProjection:
    def __init__(self, settings: Settings, codec: AvroCodec, *, topic: str = ORDERS.name, group_id: str = GROUP_ID,
                 batch_size: int = 500):
        self.settings = settings
        self.codec = codec
        self.topic = topic
        self.group_id = group_id
        self.batch_size = batch_size
        self.counts = {"applied": 0, "duplicate": 0, "dead-lettered": 0}

    async def handle(self, conn: asyncpg.Connection, msg: Message) -> DeadLetter | None:
        """Apply one record; the dead letter to produce when it cannot be decoded or applied."""
        name = record_name(self.codec, msg.value())
        reader = load_schema(name) if name in HANDLED else None
        decoded, letter = decode_or_dead_letter(self.codec, msg, reader)
        if letter is not None:
            return letter
        if name not in HANDLED:
            return dead_letter(msg, "unexpected-record", f"{name} is not an orders event this projection reads")
        try:
            change = change_of(HANDLED[name].from_avro(decoded))
        except (KeyError, TypeError, ValueError) as exc:
            return dead_letter(msg, "unprocessable", f"{name}: {exc!r}")
        try:
            applied = await apply(conn, change)
        except asyncpg.DataError as exc:  # e.g. a NUL byte in a string: this record can never be stored
            return dead_letter(msg, "unprocessable", f"{name}: {exc}")
        self.counts["applied" if applied else "duplicate"] += 1
        return None

    def _consumer(self) -> Consumer:
        return Consumer({
            "bootstrap.servers": self.settings.bootstrap_servers,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # Events the orders agent wrote in an aborted Kafka transaction never reach the read model.
            "isolation.level": "read_committed",
        })

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set. Errors reaching PostgreSQL or Kafka propagate (restart from offsets)."""
        from shopflow.api.pg import connect
        from shopflow.api.producer import producer_config
        from shopflow.db import migrate

        conn = await connect(self.settings)
        consumer = self._consumer()
        dlq = Producer(producer_config(self.settings.bootstrap_servers, client_id="shopflow-order-projection"))
        try:
            await migrate(conn)
            consumer.subscribe([self.topic])
            while not stop.is_set():
                messages = await asyncio.to_thread(consumer.consume, self.batch_size, 0.5)
                if not messages:
                    continue
                failures: list[str] = []

                def delivered(err: KafkaError | None, _msg: Message, failures: list[str] = failures) -> None:
                    if err is not None:
                        failures.append(str(err))

                for msg in messages:
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer error on %s: %s", self.topic, msg.error())
                        continue
                    letter = await self.handle(conn, msg)
                    if letter is not None:
                        self.counts["dead-lettered"] += 1
                        log.warning("dead letter from %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(),
                                    dict(letter.headers).get("dlq.reason"))
                        dlq.produce(letter.topic, key=letter.key, value=letter.value, headers=letter.headers,
                                    on_delivery=delivered)
                # Dead letters are on the broker before the offsets that skip their records are committed.
                await asyncio.to_thread(dlq.flush, 30)
                if failures:
                    raise RuntimeError(f"dead letters not delivered: {failures[0]}")
                await asyncio.to_thread(consumer.commit, asynchronous=False)
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

    async def forever() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        registry = SchemaRegistry(settings.registry_url)
        projection = OrderProjection(settings, AvroCodec(registry))
        backoff = 1.0
        log.info("order projection: %s -> orders_view (group %s)", projection.topic, projection.group_id)
        while not stop.is_set():
            try:
                await projection.run(stop)
            except (OSError, asyncpg.PostgresError, RuntimeError) as exc:
                log.error("order projection stopped: %s; restarting in %.0fs", exc, backoff)
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 30.0)
        registry.close()
        log.info("order projection stopped: %s", projection.counts)

    asyncio.run(forever())
