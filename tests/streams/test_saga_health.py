"""Saga health from records (streams/saga_health.py), no servers: Given these records, When read at this
time, Then these orders by state, stuck orders, latencies, compensations and violations."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from shopflow.streams.saga_health import SagaHealth, entered_state, step_timeouts
from shopflow.tables.values import reservation_key

T0 = 1_767_225_600_000
TIMEOUTS = {"PENDING": 60.0, "RESERVED": 30.0}
GRACE_MS = 5_000
SETTLE_MS = 30_000


def placed(o="o-1", at=T0, event_id=None):
    return ("OrderPlaced", {"order_id": o, "occurred_at": at, **({"event_id": event_id} if event_id else {})})


def payment_requested(o="o-1", at=T0):
    return ("PaymentRequested", {"order_id": o, "occurred_at": at})


def confirmed(o="o-1", at=T0, event_id=None):
    return ("OrderConfirmed", {"order_id": o, "occurred_at": at, **({"event_id": event_id} if event_id else {})})


def cancelled(o="o-1", reason="OUT_OF_STOCK", refunded=False, at=T0, event_id=None):
    return ("OrderCancelled", {"order_id": o, "occurred_at": at, "reason": reason, "refunded": refunded,
                               **({"event_id": event_id} if event_id else {})})


def captured(o="o-1", payment_id="p-1"):
    return ("PaymentSucceeded", {"order_id": o, "payment_id": payment_id})


def line(record, o="o-1", sku="A"):
    return (record, {"order_id": o, "sku": sku})


@pytest.fixture
def health_of():
    """``health_of(records)``: a SagaHealth fed these records, and its registry."""

    def make(records, *, live=True, **options):
        health = SagaHealth(TIMEOUTS, settle_ms=SETTLE_MS, stuck_grace_ms=GRACE_MS, **options)
        registry = CollectorRegistry()
        registry.register(health)
        for record, value in records:
            health.observe(record, value, live=live)
        return health, registry

    return make


STATES = [
    ("placed", [placed()], {"PENDING": 1}),
    ("payment requested", [placed(), payment_requested()], {"RESERVED": 1}),
    ("confirmed", [placed(), payment_requested(), confirmed()], {"CONFIRMED": 1}),
    ("an earlier step read late does not take it back", [placed(), confirmed(), payment_requested()],
     {"CONFIRMED": 1}),
    ("cancelled", [placed(), cancelled()], {"CANCELLED": 1}),
    ("refunded after it was confirmed", [placed(), confirmed(), cancelled(reason="BY_CUSTOMER", refunded=True)],
     {"REFUNDED": 1}),
    ("nothing but a refund follows a terminal state", [placed(), cancelled(), confirmed()], {"CANCELLED": 1}),
    ("two orders", [placed("a"), placed("b"), payment_requested("b")], {"PENDING": 1, "RESERVED": 1}),
]


@pytest.mark.parametrize("case,records,expected", STATES, ids=[c[0] for c in STATES])
def test_orders_by_state(health_of, case, records, expected):
    health, _ = health_of(records)

    orders = health.snapshot(T0)["orders"]

    assert {s: n for s, n in orders.items() if n} == expected


STUCK = [
    ("pending within its deadline", [placed()], T0 + 60_000 + GRACE_MS, 0),
    ("pending past its deadline", [placed()], T0 + 60_000 + GRACE_MS + 1, 1),
    ("reserved: the payment step's own deadline", [placed(), payment_requested(at=T0 + 10_000)],
     T0 + 10_000 + 30_000 + GRACE_MS + 1, 1),
    ("reserved within its deadline", [placed(), payment_requested(at=T0 + 10_000)], T0 + 40_000, 0),
    ("an ended order is never stuck", [placed(), cancelled()], T0 + 10**7, 0),
]


@pytest.mark.parametrize("case,records,now_ms,stuck", STUCK, ids=[c[0] for c in STUCK])
def test_an_order_past_its_step_deadline_is_stuck(health_of, case, records, now_ms, stuck):
    health, _ = health_of(records)

    assert health.snapshot(now_ms)["stuck"] == stuck


def test_the_oldest_open_order_is_aged_from_when_it_was_placed(health_of):
    health, _ = health_of([placed("old", at=T0), placed("new", at=T0 + 5_000), payment_requested("old", at=T0 + 100),
                           placed("done", at=T0 - 50_000), cancelled("done", at=T0)])

    assert health.snapshot(T0 + 12_000)["oldest_open_age_s"] == 12.0
    assert health_of([])[0].snapshot(T0)["oldest_open_age_s"] == 0.0


def test_placed_to_terminal_time_is_observed_by_outcome(health_of):
    _, registry = health_of([placed("a"), confirmed("a", at=T0 + 1_500), placed("b"),
                             cancelled("b", at=T0 + 400)])

    assert registry.get_sample_value("shopflow_order_completion_seconds_sum", {"outcome": "CONFIRMED"}) == 1.5
    assert registry.get_sample_value("shopflow_order_completion_seconds_bucket",
                                     {"outcome": "CANCELLED", "le": "0.5"}) == 1


COMPENSATIONS = [
    ("a cancellation that undoes something", [cancelled(reason="OUT_OF_STOCK")], "OUT_OF_STOCK", 1),
    ("a copy of it is the same cancellation",
     [cancelled(reason="TIMEOUT", event_id="e-1"), cancelled(reason="TIMEOUT", event_id="e-1")], "TIMEOUT", 1),
    ("a refund after confirmation", [confirmed(), cancelled(reason="BY_CUSTOMER", refunded=True)], "BY_CUSTOMER", 1),
    ("an invalid order undoes nothing", [cancelled(reason="INVALID")], "INVALID", None),
]


@pytest.mark.parametrize("case,records,reason,count", COMPENSATIONS, ids=[c[0] for c in COMPENSATIONS])
def test_compensations_are_counted_by_reason(health_of, case, records, reason, count):
    _, registry = health_of(records)

    assert registry.get_sample_value("shopflow_compensations_total", {"reason": reason}) == count


def violations(registry, rule):
    return registry.get_sample_value("shopflow_invariant_violations_total", {"rule": rule})


def test_a_double_charge_counts_at_once_and_once(health_of):
    health, registry = health_of([placed(), captured(payment_id="p-1"), captured(payment_id="p-2")])
    health.observe(*captured(payment_id="p-2"))  # the same capture read again

    assert violations(registry, "double_charge") == 1


def test_a_rule_that_needs_the_whole_story_is_judged_when_the_order_leaves(health_of):
    health, registry = health_of([placed(), line("StockReserved"), cancelled()])
    assert violations(registry, "reservation_not_released") == 0  # its StockReleased may still come

    health.sweep(T0 + SETTLE_MS)

    assert violations(registry, "reservation_not_released") == 1
    assert health.snapshot(T0 + SETTLE_MS)["tracked"] == 0


def test_a_clean_order_leaves_with_no_violation(health_of):
    health, registry = health_of([placed(), line("StockReserved"), payment_requested(), captured(), confirmed(),
                                  line("CommitStock")])

    health.sweep(T0 + SETTLE_MS)

    assert [violations(registry, rule) for rule in ("reservation_not_consumed", "double_charge",
                                                    "capture_unsettled")] == [0, 0, 0]  # present, and 0
    assert health.snapshot(T0 + SETTLE_MS)["orders"]["CONFIRMED"] == 1


WORKING_SET = [
    ("an open order stays", [placed()], T0 + 10**7, 1),
    ("an ended order stays for the settle time", [placed(), cancelled(at=T0)], T0 + SETTLE_MS - 1, 1),
    ("an ended order leaves after it", [placed(), cancelled(at=T0)], T0 + SETTLE_MS, 0),
    ("the tail of an order that left leaves after it too", [line("StockReleased")], T0 + SETTLE_MS, 0),
]


@pytest.mark.parametrize("case,records,swept_at,tracked", WORKING_SET, ids=[c[0] for c in WORKING_SET])
def test_the_working_set_keeps_open_and_recently_ended_orders_only(health_of, case, records, swept_at, tracked):
    health, registry = health_of(records)

    health.sweep(swept_at)

    assert health.snapshot(swept_at)["tracked"] == tracked
    assert violations(registry, "reservation_not_released") == 0  # a tail without its start proves nothing


def test_a_refund_of_an_order_that_left_moves_it_from_confirmed_to_refunded(health_of):
    health, _ = health_of([placed(), confirmed()])
    health.sweep(T0 + SETTLE_MS)

    health.observe(*cancelled(reason="BY_CUSTOMER", refunded=True, at=T0 + SETTLE_MS))

    orders = health.snapshot(T0 + SETTLE_MS)["orders"]
    assert (orders["CONFIRMED"], orders["REFUNDED"]) == (0, 1)


# An order whose stock reservation expired from the stock topics (7 days) while its OrderPlaced is kept (30).
HALF_GONE = [placed(), line("CommitStock"), captured(payment_id="p-1"), captured(payment_id="p-2"), confirmed()]


def test_an_order_read_from_the_history_counts_no_violation(health_of):
    health, registry = health_of(HALF_GONE, live=False)

    health.sweep(T0 + SETTLE_MS)

    assert [violations(registry, rule) for rule in ("consumed_unreserved", "double_charge")] == [0, 0]
    assert health.snapshot(T0 + SETTLE_MS)["orders"]["CONFIRMED"] == 1  # still counted by state


def test_an_order_placed_live_counts_its_violations_whatever_the_order_its_records_are_read_in(health_of):
    health, registry = health_of(HALF_GONE[1:4])  # its capture read before its OrderPlaced
    assert violations(registry, "double_charge") == 0  # whose order? not known yet

    for record, value in (placed(), confirmed()):
        health.observe(record, value, live=True)
    health.sweep(T0 + SETTLE_MS)

    assert [violations(registry, rule) for rule in ("consumed_unreserved", "double_charge")] == [1, 1]


COPIES_AFTER_LEAVING = [
    ("confirmed", [placed(), payment_requested(), confirmed(event_id="e-9")], confirmed(event_id="e-9"),
     {"CONFIRMED": 1}, None),
    ("cancelled", [placed(), cancelled(reason="TIMEOUT", event_id="e-9")],
     cancelled(reason="TIMEOUT", event_id="e-9"), {"CANCELLED": 1}, "TIMEOUT"),
    ("an earlier step read again", [placed(), payment_requested(), confirmed()], payment_requested(),
     {"CONFIRMED": 1}, None),
]


@pytest.mark.parametrize("case,records,copy,expected,reason", COPIES_AFTER_LEAVING,
                         ids=[c[0] for c in COPIES_AFTER_LEAVING])
def test_a_copy_read_after_its_order_left_neither_counts_it_twice_nor_reopens_it(health_of, case, records, copy,
                                                                                 expected, reason):
    health, registry = health_of(records)
    health.sweep(T0 + SETTLE_MS)

    health.observe(*copy)

    orders = health.snapshot(T0 + SETTLE_MS)["orders"]
    assert {s: n for s, n in orders.items() if n} == expected
    if reason is not None:
        assert registry.get_sample_value("shopflow_compensations_total", {"reason": reason}) == 1
    health.sweep(T0 + 2 * SETTLE_MS)
    assert health.snapshot(T0 + 2 * SETTLE_MS)["tracked"] == 0


def test_the_orders_remembered_after_leaving_are_bounded(health_of):
    health, _ = health_of([placed("a"), confirmed("a"), placed("b"), confirmed("b")], remember_ended=1)
    health.sweep(T0 + SETTLE_MS)

    health.observe(*confirmed("a", event_id="e-a"))  # forgotten: counted again, as before the memory
    health.observe(*confirmed("b", event_id="e-b"))  # remembered

    assert health.snapshot(T0 + SETTLE_MS)["orders"]["CONFIRMED"] == 3


def test_a_sku_below_zero_in_the_history_counts_only_after_it_falls_again_live(health_of):
    health, registry = health_of([])

    health.observe_stock("A", {"on_hand": -1, "reserved": 0}, live=False)
    assert violations(registry, "negative_stock") == 0
    for on_hand in (2, -1):
        health.observe_stock("A", {"on_hand": on_hand, "reserved": 0}, live=True)

    assert violations(registry, "negative_stock") == 1


def test_a_sku_below_zero_counts_once_per_fall(health_of):
    health, registry = health_of([])

    for on_hand in (5, -1, -2, 3, -1):
        health.observe_stock("A", {"on_hand": on_hand, "reserved": 0})
    reservation = {"sku": "A", "order_id": "o-1", "quantity": 1, "status": "RESERVED"}
    health.observe_stock(reservation_key("A", "o-1"), reservation)  # not a sku's row: no stock to judge

    assert violations(registry, "negative_stock") == 2


ENTERS = [
    ("OrderPlaced", {}, "PENDING"),
    ("PaymentRequested", {}, "RESERVED"),
    ("OrderConfirmed", {}, "CONFIRMED"),
    ("OrderCancelled", {"reason": "TIMEOUT", "refunded": False}, "CANCELLED"),
    ("OrderCancelled", {"reason": "BY_CUSTOMER", "refunded": True}, "REFUNDED"),
    ("StockReleased", {}, None),
]


@pytest.mark.parametrize("record,value,state", ENTERS)
def test_the_state_a_record_enters_comes_from_the_saga(record, value, state):
    assert entered_state(record, value) == state


def test_step_timeouts_are_the_sagas_unless_settings_override_them():
    from shopflow.settings import Settings

    assert step_timeouts(Settings(payment_timeout_s=None, reservation_timeout_s=None)) == {
        "PENDING": 60, "RESERVED": 30}
    assert step_timeouts(Settings(payment_timeout_s=3, reservation_timeout_s=None)) == {"PENDING": 60, "RESERVED": 3}


def test_no_customer_search_shows_the_heartbeat_product():
    from shopflow.catalog.search import HEARTBEAT_SKU, SearchQuery, build_request

    for query in (SearchQuery(), SearchQuery(text="heartbeat", in_stock=False)):
        assert {"term": {"sku": HEARTBEAT_SKU}} in build_request(query)["query"]["bool"]["must_not"]
