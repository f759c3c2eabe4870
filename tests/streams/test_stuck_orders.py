"""The stuck orders the monitor publishes (streams/saga_health.py ``stuck_orders``, streams/stuck_orders.py),
no servers: Given these records, When read at this time, Then these orders are stuck, with these paths."""

from __future__ import annotations

import pytest

from shopflow.streams.saga_health import AWAITING, SagaHealth
from shopflow.streams.stuck_orders import PATH_LIMIT, StuckBoard

T0 = 1_767_225_600_000
TIMEOUTS = {"PENDING": 60.0, "RESERVED": 30.0}
GRACE_MS = 5_000


@pytest.fixture
def health() -> SagaHealth:
    return SagaHealth(TIMEOUTS, settle_ms=30_000, stuck_grace_ms=GRACE_MS)


def reserved_order(health: SagaHealth, order_id: str, at: int) -> None:
    """An order placed, its one line reserved and its payment requested at ``at``: RESERVED from then on."""
    health.observe("PlaceOrder", {"order_id": order_id, "occurred_at": at - 2, "event_id": f"{order_id}-c"},
                   topic="order-commands")
    health.observe("OrderPlaced", {"order_id": order_id, "occurred_at": at - 1, "event_id": f"{order_id}-p"},
                   topic="orders")
    health.observe("StockReserved", {"order_id": order_id, "sku": "A", "occurred_at": at,
                                     "event_id": f"{order_id}-r"}, topic="stock-results")
    health.observe("PaymentRequested", {"order_id": order_id, "occurred_at": at, "event_id": f"{order_id}-q"},
                   topic="payment-requests")


def test_an_order_past_its_deadline_is_listed_with_its_path_and_what_it_waits_for(health):
    reserved_order(health, "o-1", T0)

    total, orders = health.stuck_orders(T0 + 30_000 + GRACE_MS + 1, limit=10)

    assert total == 1
    stuck, = orders
    assert (stuck.order_id, stuck.state, stuck.deadline_ms) == ("o-1", "RESERVED", T0 + 30_000)
    assert [(s.topic, s.record) for s in stuck.path] == [
        ("order-commands", "PlaceOrder"), ("orders", "OrderPlaced"), ("stock-results", "StockReserved"),
        ("payment-requests", "PaymentRequested")]
    assert stuck.awaiting == ["payment-results PaymentFailed", "payment-results PaymentSucceeded"]


def test_within_its_deadline_and_grace_an_order_is_not_stuck_and_agrees_with_the_gauge(health):
    reserved_order(health, "o-1", T0)

    assert health.stuck_orders(T0 + 30_000 + GRACE_MS, limit=10) == (0, [])
    assert health.snapshot(T0 + 30_000 + GRACE_MS)["stuck"] == 0
    assert health.snapshot(T0 + 30_000 + GRACE_MS + 1)["stuck"] == 1


def test_the_list_holds_the_first_deadlines_and_counts_them_all(health):
    for n, at in enumerate((T0 + 2_000, T0, T0 + 1_000)):
        reserved_order(health, f"o-{n}", at)

    total, orders = health.stuck_orders(T0 + 60_000, limit=2)

    assert total == 3
    assert [o.order_id for o in orders] == ["o-1", "o-2"]


def test_an_ended_order_is_never_stuck(health):
    reserved_order(health, "o-1", T0)
    health.observe("OrderConfirmed", {"order_id": "o-1", "occurred_at": T0 + 10, "event_id": "o-1-ok"},
                   topic="orders")

    assert health.stuck_orders(T0 + 600_000, limit=10) == (0, [])


def test_a_long_path_is_cut_and_says_so(health):
    reserved_order(health, "o-1", T0)
    for n in range(PATH_LIMIT):
        health.observe("StockReserved", {"order_id": "o-1", "sku": f"S{n}", "occurred_at": T0, "event_id": f"e{n}"},
                       topic="stock-results")

    _, (stuck,) = health.stuck_orders(T0 + 60_000, limit=1)

    assert len(stuck.path) == PATH_LIMIT
    assert stuck.path_truncated


def test_a_copy_of_a_record_is_not_a_second_step(health):
    reserved_order(health, "o-1", T0)
    health.observe("PaymentRequested", {"order_id": "o-1", "occurred_at": T0, "event_id": "o-1-q"},
                   topic="payment-requests")

    _, (stuck,) = health.stuck_orders(T0 + 60_000, limit=1)

    assert [s.record for s in stuck.path].count("PaymentRequested") == 1


def test_every_open_state_awaits_an_answer_on_its_topic():
    assert AWAITING == {"PENDING": ["stock-results StockRejected", "stock-results StockReserved"],
                        "RESERVED": ["payment-results PaymentFailed", "payment-results PaymentSucceeded"]}


def test_the_board_reads_back_as_written(health):
    reserved_order(health, "o-1", T0)
    total, orders = health.stuck_orders(T0 + 60_000, limit=10)
    board = StuckBoard(published_at_ms=T0 + 60_000, total=total, orders=orders)

    assert StuckBoard.model_validate_json(board.model_dump_json()) == board
