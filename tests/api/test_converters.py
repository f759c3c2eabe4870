"""The edge's converters, cursors, fingerprints and limits, without servers.

Every record the edge builds is validated against its .avsc with fastavro, so an edge type and an
Avro contract cannot drift apart silently.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import fastavro
import pytest
from pydantic import ValidationError

from shopflow.api.converters import (
    PricedLine,
    accepted_order_view,
    order_accepted,
    order_from_row,
    role_to_record,
    to_cancel_order,
    to_place_order,
    to_stock_adjusted,
    to_user_registered,
)
from shopflow.api.idempotency import fingerprint
from shopflow.api.orders_store import BadCursor, Cursor
from shopflow.api.ratelimit import FixedWindowLimiter
from shopflow.api.schemas import AddressIn, OrderCreate, OrderStatus, RegisterRequest, StockAdjust, UserPublic
from shopflow.api.security import Role
from shopflow.schemas import load_schema
from shopflow.schemas import records as r
from shopflow.schemas import users as user_records

WHEN = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def roundtrip(record: r.AvroRecord) -> r.AvroRecord:
    """Through fastavro with the record's own schema and back: what the wire would do."""
    schema = fastavro.parse_schema(load_schema(record.AVRO_NAME))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record.to_avro())
    buf.seek(0)
    return type(record).from_avro(fastavro.schemaless_reader(buf, schema, None))


def test_place_order_carries_catalog_prices_and_the_address():
    address = AddressIn(name="Ann", line1="Main St 1", city="Berlin", postal_code="10115", country="DE")
    lines = [PricedLine("A", 2, 1999, "EUR"), PricedLine("B", 1, 500, "EUR")]
    cmd = to_place_order(order_id="o-1", user_id="u-1", lines=lines, currency="EUR", payment_token="tok",
                         shipping_address=address, occurred_at=WHEN)
    assert roundtrip(cmd) == cmd
    assert cmd.lines[0] == r.OrderLine("A", 2, r.Money(1999, "EUR"))
    assert cmd.shipping_address == r.Address(name="Ann", line1="Main St 1", line2=None, city="Berlin",
                                             postal_code="10115", country="DE")
    accepted = order_accepted(cmd, "/v1/orders/o-1")
    assert accepted.total.amount_minor == 2 * 1999 + 500 and accepted.total.currency == "EUR"
    assert accepted.status == OrderStatus.ACCEPTED
    view = accepted_order_view(cmd)
    assert (view.order_id, view.user_id, view.status, view.created_at) == ("o-1", "u-1", OrderStatus.ACCEPTED, WHEN)


def test_cancel_stock_and_user_records_round_trip():
    cancel = to_cancel_order(order_id="o-1", requested_by="u-1", occurred_at=WHEN)
    assert roundtrip(cancel) == cancel
    adjusted = to_stock_adjusted(sku="A", body=StockAdjust(delta=-3, reason="recount"), adjusted_by="adm",
                                 occurred_at=WHEN)
    assert roundtrip(adjusted) == adjusted and adjusted.delta == -3 and adjusted.adjusted_by == "adm"
    user = UserPublic(id="u-1", email="a@b.io", display_name=None, roles=[Role.ADMIN, Role.DATA], created_at=WHEN)
    registered = to_user_registered(user)
    assert roundtrip(registered) == registered
    assert registered.role is user_records.Role.ADMIN and registered.occurred_at == WHEN


def test_roles_map_to_the_avro_enum():
    assert role_to_record([Role.CUSTOMER]) is user_records.Role.CUSTOMER
    assert role_to_record([Role.CUSTOMER, Role.ADMIN]) is user_records.Role.ADMIN
    # The wire has no ops or data: an account with them (and no admin) is a CUSTOMER there.
    assert role_to_record([Role.OPS, Role.DATA]) is user_records.Role.CUSTOMER


def test_a_read_model_row_becomes_the_public_order():
    row = {"order_id": "o", "user_id": "u", "status": "CANCELLED", "status_rank": 3,
           "lines": [{"sku": "A", "quantity": 1, "unit_price": {"amount_minor": 5, "currency": "EUR"}}],
           "total_minor": 5, "currency": "EUR", "reason": "OUT_OF_STOCK", "detail": "A", "created_at": WHEN,
           "updated_at": WHEN}
    order = order_from_row(row)
    assert order.status == OrderStatus.CANCELLED and order.reason == "OUT_OF_STOCK"
    assert order.lines[0].unit_price.amount_minor == 5 and order.total.amount_minor == 5
    assert order_from_row({**row, "lines": [], "total_minor": None, "currency": None}).total is None


def test_order_input_rules():
    ok = {"lines": [{"sku": "A", "quantity": 1}], "payment_token": "tok"}
    assert OrderCreate.model_validate(ok).lines[0].quantity == 1
    bad = [
        {**ok, "lines": []},
        {**ok, "lines": [{"sku": "A", "quantity": 0}]},
        {**ok, "lines": [{"sku": "A", "quantity": -1}]},
        {**ok, "lines": [{"sku": "A", "quantity": "2"}]},  # strict: a string is not a quantity
        {**ok, "lines": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}]},
        {**ok, "lines": [{"sku": "A", "quantity": 1, "unit_price": 1}]},  # no prices from clients
        {**ok, "payment_token": ""},
        {"lines": ok["lines"]},
    ]
    for body in bad:
        with pytest.raises(ValidationError):
            OrderCreate.model_validate(body)
    with pytest.raises(ValidationError, match="delta must not be zero"):
        StockAdjust(delta=0, reason="x")
    assert RegisterRequest(email="  Ann@Example.IO ", password="12345678").email == "ann@example.io"


def test_cursors_round_trip_and_refuse_what_they_did_not_issue():
    c = Cursor(WHEN, "order-9")
    assert Cursor.decode(c.encode()) == c
    for bad in ("", "!!!", "e30", "bm90IGpzb24"):  # "", not base64, {}, "not json"
        with pytest.raises(BadCursor):
            Cursor.decode(bad)


def test_fingerprints_ignore_key_order_and_see_every_difference():
    a = fingerprint("POST", "/v1/orders", {"x": 1, "y": [1, 2]})
    assert a == fingerprint("post", "/v1/orders", {"y": [1, 2], "x": 1})
    assert a != fingerprint("POST", "/v1/orders", {"x": 2, "y": [1, 2]})
    assert a != fingerprint("POST", "/v1/other", {"x": 1, "y": [1, 2]})


def test_the_limiter_counts_and_says_when_to_retry():
    limiter = FixedWindowLimiter("t", limit=2, window_s=60)
    assert limiter.decide(1, 60).allowed
    assert limiter.decide(2, 59).remaining == 0
    refused = limiter.decide(3, 42)
    assert not refused.allowed and refused.retry_after_s == 42
    assert limiter.decide(3, 0).retry_after_s == 60  # about to expire: a whole window, never 0
