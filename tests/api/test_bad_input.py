"""Bad input gets the right 4xx with a message naming what is wrong, and nothing reaches a topic.

Each case is one request; the table says the status and a phrase the message must contain. A spy on
the producer proves no case even tried to produce; the last test also reads the topics themselves.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from shopflow.api.security import Role
from shopflow.topologies.catalog import ORDER_COMMANDS, STOCK_REQUESTS

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    says: str
    method: str = "POST"
    path: str = "/v1/orders"
    body: Callable[[dict], object] | None = None  # from the skus; bytes are sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    token: str = "customer"  # customer | admin | none | tampered | expired | refresh | garbage | basic
    key: bool = True  # send an Idempotency-Key


def line(sku: str, qty: object = 1) -> dict:
    return {"sku": sku, "quantity": qty}


def order(*lines: dict) -> dict:
    return {"lines": list(lines), "payment_token": "tok"}


CASES = [
    Case("malformed-json", 422, "JSON decode error", body=lambda s: b'{"lines": [',
         headers={"Content-Type": "application/json"}),
    Case("not-an-object", 422, "valid dictionary", body=lambda s: [1, 2]),
    Case("no-lines", 422, "at least 1 item", body=lambda s: order()),
    Case("negative-quantity", 422, "greater than or equal to 1", body=lambda s: order(line(s["A"], -2))),
    Case("zero-quantity", 422, "greater than or equal to 1", body=lambda s: order(line(s["A"], 0))),
    Case("huge-quantity", 422, "less than or equal to 1000", body=lambda s: order(line(s["A"], 10**6))),
    Case("quantity-as-text", 422, "valid integer", body=lambda s: order(line(s["A"], "2"))),
    Case("fractional-quantity", 422, "valid integer", body=lambda s: order(line(s["A"], 1.5))),
    Case("too-many-lines", 422, "at most 50 items", body=lambda s: order(*(line(f"S{i}") for i in range(51)))),
    Case("no-payment-token", 422, "Field required", body=lambda s: {"lines": [line(s["A"])]}),
    Case("blank-payment-token", 422, "at least 1 character",
         body=lambda s: {**order(line(s["A"])), "payment_token": ""}),
    Case("unknown-sku", 422, "unknown sku(s): NO-SUCH-SKU", body=lambda s: order(line(s["A"]), line("NO-SUCH-SKU"))),
    Case("discontinued-sku", 422, "no longer sold", body=lambda s: order(line(s["OLD"]))),
    Case("deleted-sku", 422, "unknown sku(s)", body=lambda s: order(line(s["GONE"]))),
    Case("mixed-currencies", 422, "several currencies", body=lambda s: order(line(s["A"]), line(s["USD1"]))),
    Case("sku-twice", 422, "more than one line", body=lambda s: order(line(s["A"]), line(s["A"], 2))),
    Case("client-price", 422, "Extra inputs are not permitted",
         body=lambda s: order({**line(s["A"]), "unit_price": {"amount_minor": 1, "currency": "EUR"}})),
    Case("bad-sku-text", 422, "should match pattern", body=lambda s: order(line("a b; DROP TABLE products"))),
    Case("bad-country", 422, "should match pattern", body=lambda s: {**order(line(s["A"])), "shipping_address": {
        "name": "A", "line1": "B", "city": "C", "postal_code": "1", "country": "Germany"}}),
    Case("oversize-payload", 413, "larger than the 65536 bytes",
         body=lambda s: {**order(line(s["A"])), "payment_token": "x" * 70_000}),
    Case("no-idempotency-key", 422, "Idempotency-Key", body=lambda s: order(line(s["A"])), key=False),
    Case("blank-idempotency-key", 422, "Idempotency-Key", body=lambda s: order(line(s["A"])),
         headers={"Idempotency-Key": ""}, key=False),
    Case("no-token", 401, "missing bearer token", body=lambda s: order(line(s["A"])), token="none"),
    Case("tampered-token", 401, "signature", body=lambda s: order(line(s["A"])), token="tampered"),
    Case("expired-token", 401, "expired", body=lambda s: order(line(s["A"])), token="expired"),
    Case("refresh-as-access", 401, "refresh token was given", body=lambda s: order(line(s["A"])), token="refresh"),
    Case("garbage-token", 401, "not valid", body=lambda s: order(line(s["A"])), token="garbage"),
    Case("basic-auth", 401, "missing bearer token", body=lambda s: order(line(s["A"])), token="basic"),
    Case("cancel-unknown-order", 404, "no order", path="/v1/orders/no-such-order/cancel"),
    Case("order-id-with-spaces", 422, "should match pattern", method="GET", path="/v1/orders/a%20b"),
    Case("page-size-zero", 422, "greater than or equal to 1", method="GET", path="/v1/orders?limit=0"),
    Case("page-size-huge", 422, "less than or equal to 100", method="GET", path="/v1/orders?limit=1000"),
    Case("forged-cursor", 400, "cursor", method="GET", path="/v1/orders?cursor=" +
         base64.urlsafe_b64encode(b'{"c": "yesterday", "o": 1}').decode()),
    Case("negative-wait", 422, "greater than or equal to 0", method="GET", path="/v1/orders/x?wait=-1"),
    Case("unbounded-wait", 422, "less than or equal to 20", method="GET", path="/v1/orders/x?wait=3600"),
    Case("stock-zero-delta", 422, "delta must not be zero", path="/v1/admin/stock/{A}/adjust",
         body=lambda s: {"delta": 0, "reason": "x"}, token="admin"),
    Case("stock-unknown-sku", 422, "unknown sku", path="/v1/admin/stock/NOPE-9/adjust",
         body=lambda s: {"delta": 3, "reason": "x"}, token="admin"),
    Case("stock-as-customer", 403, "needs the shop.admin permission", path="/v1/admin/stock/{A}/adjust",
         body=lambda s: {"delta": 3, "reason": "x"}),
    Case("register-bad-email", 422, "should match pattern", path="/v1/auth/register",
         body=lambda s: {"email": "not-an-email", "password": "hunter22!"}, token="none", key=False),
    Case("register-short-password", 422, "at least 8 characters", path="/v1/auth/register",
         body=lambda s: {"email": "ok@example.test", "password": "short"}, token="none", key=False),
]


@pytest.fixture(scope="module")
async def caller(app, client, new_account, skus, idem):
    customer, admin = await new_account(), await new_account("admin")
    tokens = app.state.edge.tokens

    def bearer(kind: str) -> dict[str, str]:
        token = {
            "customer": customer.access, "admin": admin.access, "refresh": customer.refresh,
            "expired": tokens.issue(customer.id, {Role.CUSTOMER}, set(), now=time.time() - 3600).access_token,
            "tampered": _tampered(customer.access), "garbage": "x.y.z",
        }.get(kind)
        if kind == "basic":
            return {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def call(case: Case):
        headers = {**bearer(case.token), **(idem() if case.key else {}), **case.headers}
        body = case.body(skus) if case.body else None
        kw = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
        return await client.request(case.method, case.path.replace("{A}", skus["A"]), headers=headers, **kw)

    call.customer, call.admin = customer, admin
    return call


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"], claims["permissions"] = ["admin"], ["shop.admin"]
    return f"{header}.{base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip('=')}.{signature}"


@pytest.fixture
def no_produce(app):
    """Fails the test if the edge so much as tries to produce."""
    producer = app.state.edge.producer
    calls: list[tuple] = []

    async def spy(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"a bad request reached the producer: {args}")

    producer.send = spy
    yield calls
    del producer.send


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_gets_a_clear_4xx(caller, no_produce, case: Case):
    r = await caller(case)
    assert r.status_code == case.status, r.text
    body = r.json()
    assert set(body) == {"detail"}
    text = body["detail"] if isinstance(body["detail"], str) else json.dumps(body["detail"])
    assert case.says in text, text
    if case.status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")
    if isinstance(body["detail"], list):
        assert all("input" not in issue for issue in body["detail"])  # inputs (passwords) are not echoed
    assert no_produce == []


async def test_nothing_from_bad_input_reaches_a_topic(caller, codec, topic_reader):
    marks = {t.name: topic_reader.mark(t) for t in (ORDER_COMMANDS, STOCK_REQUESTS)}
    for case in CASES:
        assert (await caller(case)).status_code == case.status, case.id
    who = {caller.customer.id, caller.admin.id}
    for topic in (ORDER_COMMANDS, STOCK_REQUESTS):
        for msg in topic_reader.since(topic, marks[topic.name]):
            decoded = codec.decode(msg.value())
            assert not who & {decoded.get("user_id"), decoded.get("adjusted_by"), decoded.get("requested_by")}, decoded



async def test_an_oversize_chunked_body_is_refused_while_it_streams(client, caller, no_produce):
    async def chunks():
        yield b'{"lines": [], "payment_token": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    r = await client.post("/v1/orders", content=chunks(), headers={
        **{"Authorization": f"Bearer {caller.customer.access}"}, "Idempotency-Key": "k",
        "Content-Type": "application/json"})
    assert r.status_code == 413 and "65536 bytes" in r.json()["detail"]
