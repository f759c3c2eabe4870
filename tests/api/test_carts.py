"""The cart and the wishlist on the real stack: validation, the commands produced, idempotency,
read-your-writes through a real worker's carts table, and checkout into the order saga."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from polling import eventually_async

from shopflow.api.cart_converters import now_ms_time, to_add_cart_item
from shopflow.schemas.carts import AddCartItem, CheckoutCart, ClearCart, RemoveCartItem
from shopflow.schemas.orders import PlaceOrder
from shopflow.topologies.catalog import CART_COMMANDS, ORDER_COMMANDS
from shopflow.topologies.orders import MAX_LINE_QUANTITY, MAX_ORDER_LINES

pytestmark = pytest.mark.integration

RECORDS = {r.AVRO_NAME: r for r in (AddCartItem, RemoveCartItem, ClearCart, CheckoutCart)}


def commands_of(codec, messages, cart_id: str) -> list:
    """The cart commands among ``messages`` keyed by ``cart_id``, decoded, in order."""
    out = []
    for msg in messages:
        if msg.key() == cart_id.encode():
            out.append(RECORDS[codec.record_name(msg.value())].from_avro(codec.decode(msg.value())))
    return out


# -- validation: a refused command leaves nothing on the topic --------------------------------------------


@pytest.mark.parametrize("body,where", [
    ({"sku": "NOPE-NOT-A-SKU", "quantity": 1}, "unknown sku"),
    ({"sku": "{OLD}", "quantity": 1}, "no longer sold"),
    ({"sku": "{GONE}", "quantity": 1}, "unknown sku"),
    ({"sku": "{A}", "quantity": 0}, "quantity"),
    ({"sku": "{A}", "quantity": -3}, "quantity"),
    ({"sku": "{A}", "quantity": 1001}, "quantity"),
    ({"sku": "{A}", "quantity": "2"}, "quantity"),
    ({"sku": "{A}", "quantity": 1, "unit_price": 1}, "unit_price"),
    ({"sku": "bad sku!", "quantity": 1}, "sku"),
    ({"quantity": 1}, "sku"),
])
async def test_bad_adds_are_refused_and_produce_nothing(client, new_account, skus, idem, topic_reader, codec, body,
                                                        where):
    me = await new_account()
    body = {k: (v.format(**skus) if isinstance(v, str) else v) for k, v in body.items()}
    mark = topic_reader.mark(CART_COMMANDS)
    r = await client.post("/v1/cart/items", headers={**me.auth, **idem()}, json=body)
    assert r.status_code == 422, r.text
    assert where in r.text
    assert commands_of(codec, topic_reader.since(CART_COMMANDS, mark), me.id) == []


async def test_other_bad_input(client, new_account, skus, idem):
    me = await new_account()
    r = await client.post("/v1/cart/items", headers=me.auth, json={"sku": skus["A"], "quantity": 1})
    assert r.status_code == 422 and "Idempotency-Key" in r.text  # commands need a key
    r = await client.patch(f"/v1/cart/items/{skus['A']}", headers={**me.auth, **idem()}, json={"quantity": 0})
    assert r.status_code == 422
    r = await client.patch("/v1/cart/items/NOPE-NOT-A-SKU", headers={**me.auth, **idem()}, json={"quantity": 1})
    assert r.status_code == 422 and "unknown sku" in r.json()["detail"]
    r = await client.post("/v1/cart/checkout", headers={**me.auth, **idem()}, json={"payment_token": ""})
    assert r.status_code == 422
    r = await client.post("/v1/cart/checkout", headers={**me.auth, **idem()},
                          json={"payment_token": "tok", "card_number": "4111"})
    assert r.status_code == 422 and "card_number" in r.text
    r = await client.get("/v1/cart", headers=me.auth, params={"wait": 21})
    assert r.status_code == 422


# -- the commands produced -----------------------------------------------------------------------------


async def test_each_route_produces_its_commands(client, new_account, skus, idem, topic_reader, codec):
    me = await new_account()
    mark = topic_reader.mark(CART_COMMANDS)
    calls = [
        ("POST", "/v1/cart/items", {"sku": skus["A"], "quantity": 2}),
        ("PATCH", f"/v1/cart/items/{skus['B']}", {"quantity": 5}),
        ("DELETE", f"/v1/cart/items/{skus['A']}", None),
        ("DELETE", "/v1/cart", None),
    ]
    event_ids = []
    for method, path, body in calls:
        r = await client.request(method, path, headers={**me.auth, **idem()}, json=body)
        assert r.status_code == 202, r.text
        assert r.headers["location"] == "/v1/cart" and r.json()["cart_id"] == me.id
        event_ids += r.json()["event_ids"]
    got = commands_of(codec, topic_reader.since(
        CART_COMMANDS, mark, until=lambda ms: sum(m.key() == me.id.encode() for m in ms) >= 5), me.id)
    assert [type(c) for c in got] == [AddCartItem, RemoveCartItem, AddCartItem, RemoveCartItem, ClearCart]
    assert [c.event_id for c in got] == event_ids
    assert all(c.cart_id == me.id and c.user_id == me.id for c in got)
    add, set_remove, set_add, remove, _clear = got
    assert (add.sku, add.quantity) == (skus["A"], 2)
    # PATCH: the whole line out, then the new quantity in, 1 ms later (the add is the mark to wait for).
    assert (set_remove.sku, set_remove.quantity, set_add.sku, set_add.quantity) == (skus["B"], None, skus["B"], 5)
    assert set_add.occurred_at - set_remove.occurred_at == timedelta(milliseconds=1)
    assert (remove.sku, remove.quantity) == (skus["A"], None)


async def test_idempotency_key_replays_and_refuses_reuse(client, new_account, skus, idem, topic_reader, codec):
    me = await new_account()
    key = idem()
    mark = topic_reader.mark(CART_COMMANDS)
    body = {"sku": skus["A"], "quantity": 1}
    first = await client.post("/v1/cart/items", headers={**me.auth, **key}, json=body)
    again = await client.post("/v1/cart/items", headers={**me.auth, **key}, json=body)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = await client.post("/v1/cart/items", headers={**me.auth, **key}, json={**body, "quantity": 2})
    assert other.status_code == 422 and "already used" in other.json()["detail"]
    # Every command was on the topic (acks=all) before its 202: the end offsets now cover any duplicate.
    got = commands_of(codec, topic_reader.since(CART_COMMANDS, mark), me.id)
    assert [c.event_id for c in got] == first.json()["event_ids"]  # one command, not two


async def test_no_worker_is_a_clear_503(app, client, new_account):
    me = await new_account()
    edge = app.state.edge
    real = edge.workers
    edge.workers = httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=1)  # nothing listens on port 9
    try:
        r = await client.get("/v1/cart", headers=me.auth)
    finally:
        await edge.workers.aclose()
        edge.workers = real
    assert r.status_code == 503 and "shopflow worker" in r.json()["detail"]
    assert r.headers["retry-after"]


# -- the wishlist ---------------------------------------------------------------------------------------


async def test_wishlist(client, new_account, skus):
    me, other = await new_account(), await new_account()
    r = await client.get("/v1/wishlist", headers=me.auth)
    assert r.status_code == 200 and r.json() == {"items": []}
    first = await client.put(f"/v1/wishlist/{skus['A']}", headers=me.auth)
    assert first.status_code == 200, first.text
    assert first.json()["sku"] == skus["A"] and first.json()["available"]
    assert first.json()["price"] == {"amount_minor": 1999, "currency": "EUR"}
    again = await client.put(f"/v1/wishlist/{skus['A']}", headers=me.auth)
    assert again.json() == first.json()  # kept as it was
    assert (await client.put(f"/v1/wishlist/{skus['USD1']}", headers=me.auth)).status_code == 200
    for bad in ("NOPE-NOT-A-SKU", skus["OLD"], skus["GONE"]):
        r = await client.put(f"/v1/wishlist/{bad}", headers=me.auth)
        assert r.status_code == 422, r.text
    mine = (await client.get("/v1/wishlist", headers=me.auth)).json()["items"]
    assert [i["sku"] for i in mine] == [skus["USD1"], skus["A"]]  # newest first
    assert (await client.get("/v1/wishlist", headers=other.auth)).json() == {"items": []}
    assert (await client.delete(f"/v1/wishlist/{skus['A']}", headers=other.auth)).status_code == 404
    assert (await client.delete(f"/v1/wishlist/{skus['A']}", headers=me.auth)).status_code == 204
    r = await client.delete(f"/v1/wishlist/{skus['A']}", headers=me.auth)
    assert r.status_code == 404 and "not on your wishlist" in r.json()["detail"]
    assert [i["sku"] for i in (await client.get("/v1/wishlist", headers=me.auth)).json()["items"]] == [skus["USD1"]]


async def test_wishlist_sql_is_parameterised(client, new_account):
    me = await new_account()
    r = await client.put("/v1/wishlist/A'%3B--", headers=me.auth)
    assert r.status_code == 422  # the path pattern refuses it before any SQL
    r = await client.put("/v1/wishlist/A.b-c_d", headers=me.auth)
    assert r.status_code == 422 and r.json()["detail"] == "unknown sku: A.b-c_d"


# -- through the carts agent (a real worker) -----------------------------------------------------------


async def cart(client, account, wait: float = 15) -> dict:
    r = await client.get("/v1/cart", headers=account.auth, params={"wait": wait})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["up_to_date"], body
    return body


async def test_a_new_cart_is_open_and_empty(client, new_account):
    me = await new_account()
    body = await cart(client, me, wait=0)
    assert body == {"cart_id": me.id, "user_id": me.id, "status": "OPEN", "items": [], "subtotal": None,
                    "updated_at": None, "checked_out_order": None, "up_to_date": True}


async def test_empty_cart_checkout_is_409(client, new_account, idem):
    me = await new_account()
    r = await client.post("/v1/cart/checkout", headers={**me.auth, **idem()}, json={"payment_token": "tok_approve"})
    assert r.status_code == 409 and "empty" in r.json()["detail"]


async def test_cart_to_order(client, new_account, skus, idem, topic_reader, codec, saga_workers):
    me = await new_account()

    async def do(method: str, path: str, body=None) -> None:
        r = await client.request(method, path, headers={**me.auth, **idem()}, json=body)
        assert r.status_code == 202, r.text

    await do("POST", "/v1/cart/items", {"sku": skus["A"], "quantity": 2})
    await do("POST", "/v1/cart/items", {"sku": skus["B"], "quantity": 1})
    await do("POST", "/v1/cart/items", {"sku": skus["C"], "quantity": 1})
    await do("PATCH", f"/v1/cart/items/{skus['A']}", {"quantity": 3})
    await do("DELETE", f"/v1/cart/items/{skus['C']}")
    body = await cart(client, me)  # read-your-writes: all five commands applied
    assert body["status"] == "OPEN"
    assert [(line["sku"], line["quantity"]) for line in body["items"]] == [(skus["A"], 3), (skus["B"], 1)]
    assert body["subtotal"] == {"amount_minor": 3 * 1999 + 500, "currency": "EUR"}

    orders_mark = topic_reader.mark(ORDER_COMMANDS)
    carts_mark = topic_reader.mark(CART_COMMANDS)
    key = idem()
    r = await client.post("/v1/cart/checkout", headers={**me.auth, **key}, json={"payment_token": "tok_approve"})
    assert r.status_code == 202, r.text
    order_id = r.json()["order_id"]
    assert r.headers["location"] == f"/v1/orders/{order_id}"
    assert r.json()["total"] == {"amount_minor": 3 * 1999 + 500, "currency": "EUR"}
    replay = await client.post("/v1/cart/checkout", headers={**me.auth, **key}, json={"payment_token": "tok_approve"})
    assert replay.json() == r.json()  # a retried checkout is the same order

    placed = [PlaceOrder.from_avro(codec.decode(m.value())) for m in topic_reader.since(
        ORDER_COMMANDS, orders_mark, until=lambda ms: any(m.key() == order_id.encode() for m in ms))
        if m.key() == order_id.encode()]
    assert len(placed) == 1 and placed[0].user_id == me.id
    assert {(line.sku, line.quantity, line.unit_price.amount_minor) for line in placed[0].lines} == {
        (skus["A"], 3, 1999), (skus["B"], 1, 500)}
    closed = commands_of(codec, topic_reader.since(CART_COMMANDS, carts_mark), me.id)
    assert [(type(c), c.order_id) for c in closed] == [(CheckoutCart, order_id)]

    after = await cart(client, me)
    assert (after["status"], after["items"], after["checked_out_order"]) == ("CHECKED_OUT", [], order_id)
    again = await client.post("/v1/cart/checkout", headers={**me.auth, **idem()}, json={"payment_token": "tok_approve"})
    assert again.status_code == 409 and order_id in again.json()["detail"]

    got = await client.get(f"/v1/orders/{order_id}", headers=me.auth)
    assert got.status_code == 200 and got.json()["status"] in ("ACCEPTED", "PENDING", "CONFIRMED", "CANCELLED")

    # The saga takes it to an end (no stock was seeded for the session's skus: CANCELLED out of stock).
    async with httpx.AsyncClient(base_url=saga_workers[0], follow_redirects=True) as worker:
        async def ended() -> bool:
            w = await worker.get(f"/orders/{order_id}/")
            return w.status_code == 200 and w.json().get("status") in ("CONFIRMED", "CANCELLED", "REFUNDED")

        await eventually_async(ended, timeout_s=30, interval_s=0.3, what=f"order {order_id} ended")

    # The next change starts a new cart.
    await do("POST", "/v1/cart/items", {"sku": skus["B"], "quantity": 4})
    fresh = await cart(client, me)
    assert (fresh["status"], [(i["sku"], i["quantity"]) for i in fresh["items"]]) == ("OPEN", [(skus["B"], 4)])
    await do("DELETE", "/v1/cart")
    assert (await cart(client, me))["items"] == []


# -- a cart stays an order POST /v1/orders would take (topologies.orders) ----------------------------------


@pytest.fixture
async def many_skus(api_settings) -> list[str]:
    """``MAX_ORDER_LINES + 1`` skus in the catalog, for one test's cart."""
    from shopflow.db import connect

    made = [f"L{uuid.uuid4().hex[:6].upper()}-{i:02d}" for i in range(MAX_ORDER_LINES + 1)]
    conn = await connect(api_settings)
    try:
        await conn.executemany("INSERT INTO products (sku, name, price_minor, currency, active) "
                               "VALUES ($1, $1, 100, 'EUR', true)", [(sku,) for sku in made])
    finally:
        await conn.close()
    return made


async def test_a_cart_never_holds_more_skus_than_an_order(app, client, new_account, many_skus, idem, topic_reader,
                                                          codec):
    me = await new_account()
    *fifty, last = many_skus
    for sku in fifty:
        r = await client.post("/v1/cart/items", headers={**me.auth, **idem()}, json={"sku": sku, "quantity": 1})
        assert r.status_code == 202, r.text
    assert len((await cart(client, me))["items"]) == MAX_ORDER_LINES

    carts_mark = topic_reader.mark(CART_COMMANDS)
    for method, path, body in (("POST", "/v1/cart/items", {"sku": last, "quantity": 1}),
                               ("PATCH", f"/v1/cart/items/{last}", {"quantity": 1})):
        r = await client.request(method, path, headers={**me.auth, **idem()}, json=body)
        assert r.status_code == 409 and f"at most {MAX_ORDER_LINES} lines" in r.json()["detail"], r.text
    assert commands_of(codec, topic_reader.since(CART_COMMANDS, carts_mark), me.id) == []  # nothing produced
    more = await client.post("/v1/cart/items", headers={**me.auth, **idem()}, json={"sku": fifty[0], "quantity": 2})
    assert more.status_code == 202, more.text  # a sku already in the cart is no new line

    # An add the edge could not count (two adds racing, or the workers away) still gets the cart past
    # the limit; checkout then refuses it as POST /v1/orders would, and places nothing.
    edge = app.state.edge
    await edge.producer.send(edge.topics.cart_commands, me.id, to_add_cart_item(
        user_id=me.id, sku=last, quantity=1, occurred_at=now_ms_time()))

    async def over_the_limit() -> bool:
        return len((await cart(client, me, wait=0))["items"]) == MAX_ORDER_LINES + 1

    await eventually_async(over_the_limit, timeout_s=30, what="the cart past the limit")
    orders_mark = topic_reader.mark(ORDER_COMMANDS)
    r = await client.post("/v1/cart/checkout", headers={**me.auth, **idem()}, json={"payment_token": "tok_approve"})
    assert r.status_code == 409, r.text
    assert f"at most {MAX_ORDER_LINES} lines" in r.json()["detail"] and "change the cart" in r.json()["detail"]
    commands = (codec.decode(m.value()) for m in topic_reader.since(ORDER_COMMANDS, orders_mark))
    assert [c for c in commands if c.get("user_id") == me.id] == []


async def test_a_line_never_holds_more_units_than_an_order_takes(client, new_account, skus, idem):
    me = await new_account()
    half = MAX_LINE_QUANTITY // 2 + 1
    r = await client.post("/v1/cart/items", headers={**me.auth, **idem()}, json={"sku": skus["A"], "quantity": half})
    assert r.status_code == 202, r.text
    await cart(client, me)  # the workers have the first add
    r = await client.post("/v1/cart/items", headers={**me.auth, **idem()}, json={"sku": skus["A"], "quantity": half})
    assert r.status_code == 409 and f"at most {MAX_LINE_QUANTITY} units" in r.json()["detail"], r.text
    r = await client.patch(f"/v1/cart/items/{skus['A']}", headers={**me.auth, **idem()},
                           json={"quantity": MAX_LINE_QUANTITY})
    assert r.status_code == 202, r.text  # setting the line replaces its quantity
