"""The orders agent's records: its own checks of a PlaceOrder (prices, currency, token; the line limits are
the shared rule of topologies/orders.py, tabled in test_orders_handler.py), the catalog topic of each
record it emits, and an emitted record kept in the order's stored state coming back the same."""

from __future__ import annotations

import pytest

from shopflow.schemas.orders import OrderPlaced, PlaceOrder
from shopflow.schemas.records import Money, OrderLine, datetime_of_ms
from shopflow.streams.orders import handle_order, validation_problem
from shopflow.streams.runtime import Output
from shopflow.tables.values import decode, encode
from shopflow.topologies.catalog import ORDERS, STOCK_REQUESTS

T0 = 1_767_225_600_000


def place(lines: list[tuple[str, int]], *, price: int = 100, currency: str = "EUR", token: str = "tok_approve",
          line_currency: str | None = None) -> PlaceOrder:
    return PlaceOrder(
        event_id="00000000-0000-4000-8000-000000000001", order_id="o-1", user_id="u-1",
        lines=tuple(OrderLine(sku, q, Money(price, line_currency or currency)) for sku, q in lines),
        payment_token=token, currency=currency, occurred_at=datetime_of_ms(T0),
    )


@pytest.mark.parametrize("order,problem", [
    (place([("A", 1)], price=-1), "A: negative price"),
    (place([("A", 1)], line_currency="USD"), "A: priced in USD, the order is in EUR"),
    (place([("A", 1)], token=""), "no payment token"),
])
def test_the_agent_keeps_its_own_checks_of_prices_currency_and_token(order, problem):
    assert validation_problem(order) == problem


def test_outputs_carry_records_on_their_catalog_topics():
    result = handle_order(None, place([("A", 2), ("B", 1)]), T0, {})

    assert [(o.topic, o.short, o.key) for o in result.outputs] == [
        (ORDERS, "OrderPlaced", "o-1"), (STOCK_REQUESTS, "ReserveStock", "A"), (STOCK_REQUESTS, "ReserveStock", "B"),
    ]
    placed = result.outputs[0].record
    assert isinstance(placed, OrderPlaced) and placed.total == Money(300, "EUR")


def test_an_output_kept_in_the_stored_state_comes_back_as_the_same_record():
    output = handle_order(None, place([("A", 1)]), T0, {}).outputs[0]

    stored = decode(encode({"caused": output.stored()}))  # as the table's JSON keeps it
    assert stored is not None and stored["caused"][2]["occurred_at"] == T0  # timestamps as epoch ms
    assert Output.restore(stored["caused"]) == output
