"""The order projection on the real stack: orders events in, ``orders_view`` rows out, once, never backwards.

The projection runs on the real Kafka and PostgreSQL, over a fresh topic (and its ``.dlq``) and in
a throwaway PostgreSQL schema, with events written by the project's codec as the orders agent writes
them.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka.admin import NewTopic
from polling import eventually_async
from pydantic import SecretStr

from shopflow.schemas.orders import CancelReason, OrderCancelled, OrderPlaced, PlaceOrder
from shopflow.schemas.records import Money, OrderLine
from shopflow.streams.order_projection import OrderProjection
from shopflow.topologies.catalog import ORDER_COMMANDS, ORDERS
from shopflow.topologies.orders import ORDERS_VIEW_CHANNEL

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
pytestmark = pytest.mark.integration


def placed(order_id: str, user_id: str = "u-1", at: datetime = T0, event_id: str | None = None) -> OrderPlaced:
    lines = (OrderLine("SKU-A", 2, Money(1999, "EUR")), OrderLine("SKU-B", 1, Money(500, "EUR")))
    return OrderPlaced(event_id or str(uuid.uuid4()), order_id, user_id, lines, Money(4498, "EUR"), "tok", at)


def cancelled(order_id: str, user_id: str = "u-1", refunded: bool = False, at: datetime = T0) -> OrderCancelled:
    return OrderCancelled(event_id=str(uuid.uuid4()), order_id=order_id, user_id=user_id,
                          reason=CancelReason.OUT_OF_STOCK, detail="SKU-A", refunded=refunded,
                          occurred_at=at + timedelta(seconds=5))


@pytest.fixture(scope="module")
def settings(stack, pg_schema_factory):
    return stack.model_copy(update={"postgres_schema": pg_schema_factory("projtest"),
                                    "jwt_secret": SecretStr("x" * 40)})


@pytest.fixture
def orders_topic(topic_factory, admin):
    """A fresh stand-in for the orders topic, with its dead-letter topic."""
    topic = topic_factory("orders", partitions=3)
    admin.create_topics([NewTopic(f"{topic}.dlq", 1, 1)])[f"{topic}.dlq"].result(timeout=30)
    yield topic
    admin.delete_topics([f"{topic}.dlq"])[f"{topic}.dlq"].result(timeout=30)


class Running:
    def __init__(self, settings, codec, topic: str, group: str):
        self.projection = OrderProjection(settings, codec, topic=topic, group_id=group, batch_size=50)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.projection.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def db(settings):
    from shopflow.db import connect, migrate

    conn = await connect(settings)
    await migrate(conn)
    yield conn
    await conn.close()


@pytest.fixture
def send(producer, codec, orders_topic):
    def produce(*events, raw: bytes | None = None, key: str = "k") -> None:
        for event in events:
            topic = ORDERS if type(event) in ORDERS.values else ORDER_COMMANDS
            value = codec.encode(topic, event)
            producer.produce(orders_topic, key=event.order_id.encode(), value=value)
        if raw is not None:
            producer.produce(orders_topic, key=key.encode(), value=raw)
        assert producer.flush(10) == 0

    return produce


@pytest.fixture
def row_of(db):
    """``await row_of(order_id, until=...)``: the order's ``orders_view`` row once ``until(row)`` holds."""

    async def wait(order_id: str, until=lambda row: row is not None, timeout_s: float = 60.0):
        async def check():
            row = await db.fetchrow("SELECT * FROM orders_view WHERE order_id = $1", order_id)
            assert until(row), f"orders_view row of {order_id}: {row!r}"
            return row

        return await eventually_async(check, timeout_s=timeout_s)

    return wait



async def test_placed_then_cancelled_becomes_one_row_and_notifies(settings, codec, orders_topic, db, send, row_of):
    notified: list[str] = []
    await db.add_listener(ORDERS_VIEW_CHANNEL, lambda *args: notified.append(args[3]))
    running = Running(settings, codec, orders_topic, f"test-{uuid.uuid4().hex}")
    try:
        order = f"o-{uuid.uuid4().hex[:8]}"
        send(placed(order))
        row = await row_of(order)
        assert row["status"] == "PENDING" and row["total_minor"] == 4498 and row["currency"] == "EUR"
        assert [line["sku"] for line in row["lines"]] == ["SKU-A", "SKU-B"]
        assert row["created_at"] == T0 and row["user_id"] == "u-1"

        send(cancelled(order))
        row = await row_of(order, lambda r: r["status"] != "PENDING")
        assert (row["status"], row["reason"], row["detail"]) == ("CANCELLED", "OUT_OF_STOCK", "SKU-A")
        assert row["lines"] and row["total_minor"] == 4498  # a cancel keeps what the order was
        assert row["updated_at"] == T0 + timedelta(seconds=5)

        async def notified_twice() -> bool:
            assert notified.count(order) == 2, notified
            return True

        await eventually_async(notified_twice, timeout_s=10)
    finally:
        await running.close()


async def test_duplicates_apply_once_and_status_never_goes_back(settings, codec, orders_topic, db, send, row_of):
    running = Running(settings, codec, orders_topic, f"test-{uuid.uuid4().hex}")
    try:
        dup, late = f"o-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
        event = placed(dup)
        send(event, event, event)  # redelivered
        # The terminal event first, the OrderPlaced after it (a replay, or a lagging copy).
        send(cancelled(late, refunded=True), placed(late))
        await row_of(late, lambda r: r is not None and r["lines"] != [])
        assert (await row_of(dup))["status"] == "PENDING"
        assert await db.fetchval("SELECT count(*) FROM orders_view_events WHERE order_id = $1", dup) == 1
        assert running.projection.counts["duplicate"] == 2
        row = await row_of(late)
        assert row["status"] == "REFUNDED" and row["reason"] == "OUT_OF_STOCK"  # not taken back to PENDING
        assert row["total_minor"] == 4498 and len(row["lines"]) == 2  # yet the placed details are filled in
        assert row["created_at"] == T0  # the earliest event's time
    finally:
        await running.close()


async def test_poison_goes_to_the_dead_letter_topic_and_the_stream_goes_on(
        settings, codec, orders_topic, db, send, consume, row_of):
    running = Running(settings, codec, orders_topic, f"test-{uuid.uuid4().hex}")
    try:
        after = f"o-{uuid.uuid4().hex[:8]}"
        wrong_type = PlaceOrder(event_id=str(uuid.uuid4()), order_id="o-cmd", user_id="u", lines=(),
                                payment_token="t", currency="EUR", occurred_at=T0)
        send(raw=b"\x07not avro", key="o-bad")
        send(wrong_type)
        send(placed(after))
        assert (await row_of(after))["status"] == "PENDING"  # the stream went on
        # The three records sit on different partitions: the good one may be applied before both poison
        # ones are handled, so wait for the projection to have sent both letters before reading them.
        async def both_dead_lettered() -> bool:
            assert running.projection.counts["dead-lettered"] == 2, running.projection.counts
            return True

        await eventually_async(both_dead_lettered, timeout_s=60)
        # By key: handled on two partitions, the two letters may come in either order.
        letters = {m.key(): m for m in consume(f"{orders_topic}.dlq", 2, timeout_s=60)}
        headers = {key: dict(m.headers()) for key, m in letters.items()}
        assert {key: h["dlq.reason"] for key, h in headers.items()} == {
            b"o-bad": b"bad-magic-byte", b"o-cmd": b"unexpected-record"}
        assert all(h["dlq.topic"] == orders_topic.encode() for h in headers.values())
        assert letters[b"o-bad"].value() == b"\x07not avro"  # original bytes kept
        assert b"PlaceOrder" in headers[b"o-cmd"]["dlq.detail"]
        assert await db.fetchval("SELECT count(*) FROM orders_view WHERE order_id IN ('o-bad', 'o-cmd')") == 0
    finally:
        await running.close()


async def test_a_restarted_projection_resumes_from_committed_offsets(settings, codec, orders_topic, db, send,
                                                                     row_of):
    group = f"test-{uuid.uuid4().hex}"
    first = Running(settings, codec, orders_topic, group)
    order = f"o-{uuid.uuid4().hex[:8]}"
    try:
        send(placed(order))
        await row_of(order)
    finally:
        await first.close()
    second = Running(settings, codec, orders_topic, group)
    try:
        send(cancelled(order))
        row = await row_of(order, lambda r: r["status"] == "CANCELLED")
        assert row["status"] == "CANCELLED"
        # Only the new event was read: nothing before the committed offset came back.
        assert second.projection.counts == {"applied": 1, "duplicate": 0, "dead-lettered": 0}
    finally:
        await second.close()
