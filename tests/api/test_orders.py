"""Orders through the edge on the real stack: the command on the topic, the read model, read-your-writes."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka.admin import NewTopic
from polling import eventually_async

from shopflow.schemas import load_schema
from shopflow.schemas.orders import CancelOrder, CancelReason, OrderCancelled, OrderPlaced, PlaceOrder
from shopflow.schemas.records import Money, OrderLine
from shopflow.streams.order_projection import OrderProjection, apply, change_of
from shopflow.topologies.catalog import ORDER_COMMANDS, ORDERS

pytestmark = pytest.mark.integration


def java_murmur2_partition(key: bytes, partitions: int) -> int:
    """Kafka's Java default partitioner: toPositive(murmur2(key)) % partitions."""
    m, seed = 0x5BD1E995, 0x9747B28C
    h = (seed ^ len(key)) & 0xFFFFFFFF
    for i in range(0, len(key) - len(key) % 4, 4):
        k = int.from_bytes(key[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[len(key) - len(key) % 4:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def test_the_murmur2_reference_matches_kafkas_own_vector():
    # From Kafka's UtilsTest: murmur2("21") == -973932308.
    assert java_murmur2_partition(b"21", 2**31 - 1) == (-973932308 & 0x7FFFFFFF) % (2**31 - 1)


async def test_placing_an_order_produces_place_order_keyed_by_order_id(client, new_account, skus, idem, codec,
                                                                        topic_reader):
    acct = await new_account()
    mark = topic_reader.mark(ORDER_COMMANDS)
    body = {"lines": [{"sku": skus["A"], "quantity": 2}, {"sku": skus["B"], "quantity": 3}],
            "payment_token": "tok_visa_4242",
            "shipping_address": {"name": "Ann", "line1": "Main St 1", "city": "Berlin", "postal_code": "10115",
                                 "country": "DE"}}
    r = await client.post("/v1/orders", json=body, headers={**acct.auth, **idem()})
    assert r.status_code == 202, r.text
    accepted = r.json()
    order_id = accepted["order_id"]
    assert r.headers["location"] == accepted["location"] == f"/v1/orders/{order_id}"
    assert accepted["total"] == {"amount_minor": 2 * 1999 + 3 * 500, "currency": "EUR"}

    found = topic_reader.since(ORDER_COMMANDS, mark, until=lambda ms: any(m.key() == order_id.encode() for m in ms))
    msg = next(m for m in found if m.key() == order_id.encode())
    command = PlaceOrder.from_avro(codec.decode(msg.value(), load_schema(PlaceOrder.AVRO_NAME)))
    assert (command.order_id, command.user_id, command.currency, command.payment_token) == (
        order_id, acct.id, "EUR", "tok_visa_4242")
    assert command.lines == (OrderLine(skus["A"], 2, Money(1999, "EUR")), OrderLine(skus["B"], 3, Money(500, "EUR")))
    assert command.shipping_address.city == "Berlin"
    assert dict(msg.headers())["event_type"] == b"PlaceOrder"
    # The same partition a Java producer (or Debezium) would pick for this key.
    assert msg.partition() == java_murmur2_partition(order_id.encode(), ORDER_COMMANDS.partitions)

    # Read-your-writes before the saga has said anything: the order is there, ACCEPTED.
    got = await client.get(f"/v1/orders/{order_id}", headers=acct.auth)
    assert got.status_code == 200 and got.json()["status"] == "ACCEPTED"
    assert got.json()["total"] == accepted["total"]


async def test_prices_come_from_the_catalog_not_the_client(client, new_account, skus, idem):
    acct = await new_account()
    r = await client.post("/v1/orders", headers={**acct.auth, **idem()}, json={
        "lines": [{"sku": skus["C"], "quantity": 1, "unit_price": {"amount_minor": 1, "currency": "EUR"}}],
        "payment_token": "tok"})
    assert r.status_code == 422 and "extra" in r.text.lower()
    r = await client.post("/v1/orders", headers={**acct.auth, **idem()},
                          json={"lines": [{"sku": skus["C"], "quantity": 1}], "payment_token": "tok"})
    assert r.json()["lines"][0]["unit_price"] == {"amount_minor": 12000, "currency": "EUR"}


async def _apply(app, order_id: str, user_id: str, at: datetime, cancel: bool = False) -> None:
    """Write a read-model row the way the projection does."""
    lines = (OrderLine("X", 1, Money(100, "EUR")),)
    event = (OrderCancelled(event_id=str(uuid.uuid4()), order_id=order_id, user_id=user_id,
                            reason=CancelReason.BY_CUSTOMER, occurred_at=at) if cancel else
             OrderPlaced(str(uuid.uuid4()), order_id, user_id, lines, Money(100, "EUR"), "tok", at))
    async with app.state.edge.pool.acquire() as conn:
        await apply(conn, change_of(event))


async def test_my_orders_page_newest_first_with_an_opaque_cursor(client, app, new_account):
    me, other, admin = await new_account(), await new_account(), await new_account("admin")
    t0 = datetime(2025, 6, 1, tzinfo=UTC)
    mine = [f"mine-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    for i, order_id in enumerate(mine):
        await _apply(app, order_id, me.id, t0 + timedelta(minutes=i))
    await _apply(app, f"theirs-{uuid.uuid4().hex[:8]}", other.id, t0 + timedelta(minutes=10))

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/orders", headers=me.auth, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [o["order_id"] for o in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(mine)) and pages == 3  # newest first, every order once, none of theirs

    r = await client.get("/v1/orders", headers=me.auth, params={"cursor": "bm9wZQ"})
    assert r.status_code == 400 and "cursor" in r.json()["detail"]

    everyone = await client.get("/v1/admin/orders", headers=admin.auth, params={"user_id": other.id})
    assert [o["user_id"] for o in everyone.json()["items"]] == [other.id]


@pytest.fixture
async def projection(app, codec, topic_factory, admin):
    """The order projection over a stand-in orders topic, writing the app's read model."""
    topic = topic_factory("orders", partitions=3)
    admin.create_topics([NewTopic(f"{topic}.dlq", 1, 1)])[f"{topic}.dlq"].result(timeout=30)
    stop = asyncio.Event()
    runner = OrderProjection(app.state.settings, codec, topic=topic, group_id=f"test-{uuid.uuid4().hex}")
    task = asyncio.create_task(runner.run(stop))
    yield topic
    stop.set()
    await asyncio.wait_for(task, 30)
    admin.delete_topics([f"{topic}.dlq"])[f"{topic}.dlq"].result(timeout=30)


async def test_wait_returns_once_the_saga_reflects_the_accepted_command(app, client, new_account, skus, idem, codec,
                                                                         producer, projection):
    acct = await new_account()
    r = await client.post("/v1/orders", headers={**acct.auth, **idem()},
                          json={"lines": [{"sku": skus["A"], "quantity": 1}], "payment_token": "tok"})
    order_id = r.json()["order_id"]

    def emit(event) -> None:  # as the orders agent would
        producer.produce(projection, key=order_id.encode(), value=codec.encode(ORDERS, event))
        producer.flush(10)

    async def once_waited_for(event) -> None:
        """``event`` emitted once a GET is waiting for the order (subscribed to its notifications)."""

        async def waiting() -> bool:
            return order_id in app.state.edge.notifications._waiters

        await eventually_async(waiting, timeout_s=10, interval_s=0.01, what=f"a GET waiting for {order_id}")
        await asyncio.to_thread(emit, event)

    now = datetime.now(UTC)
    placed = OrderPlaced(str(uuid.uuid4()), order_id, acct.id, (OrderLine(skus["A"], 1, Money(1999, "EUR")),),
                         Money(1999, "EUR"), "tok", now)
    t0 = time.monotonic()
    emitter = asyncio.create_task(once_waited_for(placed))
    got = await client.get(f"/v1/orders/{order_id}", headers=acct.auth, params={"wait": 15})
    took = time.monotonic() - t0
    await emitter
    # It waited for the event (sent only once the GET was waiting; the status it answers is the event's), and
    # returned as soon as the event was projected, not at the end of its 15 s.
    assert got.status_code == 200 and got.json()["status"] == "PENDING", got.text
    assert took < 10

    # A cancel raises the bar: PENDING no longer satisfies the wait, CANCELLED does.
    r = await client.post(f"/v1/orders/{order_id}/cancel", headers={**acct.auth, **idem()})
    assert r.status_code == 202 and r.headers["location"] == f"/v1/orders/{order_id}"
    quick = await client.get(f"/v1/orders/{order_id}", headers=acct.auth, params={"wait": 0.5})
    assert quick.json()["status"] == "PENDING"  # bounded: returns as it is when time is up
    cancelled = OrderCancelled(event_id=str(uuid.uuid4()), order_id=order_id, user_id=acct.id,
                               reason=CancelReason.BY_CUSTOMER, occurred_at=now + timedelta(seconds=1))
    emitter = asyncio.create_task(once_waited_for(cancelled))
    got = await client.get(f"/v1/orders/{order_id}", headers=acct.auth, params={"wait": 15})
    await emitter
    assert got.json()["status"] == "CANCELLED" and got.json()["reason"] == "BY_CUSTOMER"

    again = await client.post(f"/v1/orders/{order_id}/cancel", headers={**acct.auth, **idem()})
    assert again.status_code == 409 and "already CANCELLED" in again.json()["detail"]
    mine = await client.get("/v1/orders", headers=acct.auth)
    assert [o["order_id"] for o in mine.json()["items"]] == [order_id]


async def test_cancel_produces_cancel_order(client, new_account, skus, idem, codec, topic_reader):
    acct = await new_account()
    r = await client.post("/v1/orders", headers={**acct.auth, **idem()},
                          json={"lines": [{"sku": skus["B"], "quantity": 1}], "payment_token": "tok"})
    order_id = r.json()["order_id"]
    mark = topic_reader.mark(ORDER_COMMANDS)
    r = await client.post(f"/v1/orders/{order_id}/cancel", headers={**acct.auth, **idem()})
    assert r.status_code == 202
    found = topic_reader.since(ORDER_COMMANDS, mark, until=lambda ms: any(m.key() == order_id.encode() for m in ms))
    cancel = CancelOrder.from_avro(codec.decode(next(m for m in found if m.key() == order_id.encode()).value()))
    assert (cancel.order_id, cancel.requested_by, cancel.event_id) == (order_id, acct.id, r.json()["event_id"])


async def test_admin_stock_adjustment_goes_to_stock_requests_keyed_by_sku(client, new_account, skus, idem, codec,
                                                                          topic_reader):
    from shopflow.schemas.inventory import StockAdjusted
    from shopflow.topologies.catalog import STOCK_REQUESTS

    admin = await new_account("admin")
    mark = topic_reader.mark(STOCK_REQUESTS)
    r = await client.post(f"/v1/admin/stock/{skus['A']}/adjust", headers={**admin.auth, **idem()},
                          json={"delta": 25, "reason": "goods received"})
    assert r.status_code == 202, r.text
    event_id = r.json()["event_id"]
    found = topic_reader.since(STOCK_REQUESTS, mark, until=lambda ms: any(
        dict(m.headers() or []).get("event_id") == event_id.encode() for m in ms))
    msg = next(m for m in found if dict(m.headers() or []).get("event_id") == event_id.encode())
    event = StockAdjusted.from_avro(codec.decode(msg.value()))
    assert msg.key() == skus["A"].encode()
    assert (event.sku, event.delta, event.reason, event.adjusted_by) == (skus["A"], 25, "goods received", admin.id)
    assert msg.partition() == java_murmur2_partition(skus["A"].encode(), STOCK_REQUESTS.partitions)
    unknown = await client.post("/v1/admin/stock/NO-SUCH-SKU/adjust", headers={**admin.auth, **idem()},
                                json={"delta": 1, "reason": "x"})
    assert unknown.status_code == 422 and "unknown sku" in unknown.json()["detail"]
