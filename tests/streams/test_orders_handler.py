"""The orders agent's handler as a Given/When/Then table, one row per case: Given the records an order has
met (its stored state, built by the handler itself), When one typed record arrives, Then the order's status
and reason, the records emitted ("<type> <key>", as the replay scenarios list them), a few of their fields,
a duplicate flag, or the Unexpected that sends the record to the dead-letter topic.

Every row is also run a second time from scratch (same ids: outputs derive from their cause) and its When
delivered again (answered with the same records, changing nothing). The rows cover every rule of
``ORDER_SAGA``: two tests below check that each transition is taken and each absorb met by some row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import pytest
from handler_factories import (
    CANCELLED_WHILE_PENDING,
    CANCELLED_WHILE_RESERVED,
    CONFIRMED,
    INVALID,
    PAYMENT_ID,
    PLACED,
    REFUNDED,
    RESERVED,
    T0,
    TOTAL,
    as_stored,
    cancel_order,
    emitted,
    emitted_ids,
    line,
    many_lines,
    order_after,
    payment_failed,
    payment_refunded,
    payment_succeeded,
    place_order,
    step_timed_out,
    stock_rejected,
    stock_released,
    stock_reserved,
)

from shopflow.schemas.orders import StepTimedOut
from shopflow.streams.orders import OrderRecord, due_timeouts, handle_order
from shopflow.streams.runtime import Result, Unexpected
from shopflow.tables.values import OrderState, encode
from shopflow.topologies.orders import MAX_LINE_QUANTITY, MAX_ORDER_LINES
from shopflow.topologies.saga import ORDER_SAGA, PAYMENT_TIMEOUT, RESERVATION_TIMEOUT
from shopflow.topologies.saga_model import START, Absorb, Timeout

NOW = T0 + 1_000  # when the When arrives: after every Given record


def deadline_passed(state: OrderState) -> StepTimedOut:
    """The StepTimedOut the deadline scanner emits for the order's current step."""
    (due,) = due_timeouts([(state.order_id, state.to_dict())], state.deadline_ms or 0)
    assert isinstance(due.record, StepTimedOut)
    return due.record


When = OrderRecord | Callable[[OrderState], OrderRecord]
A_B = ("ReleaseStock SKU-A", "ReleaseStock SKU-B")  # a cancel releases every line not released yet


@dataclass(frozen=True)
class Case:
    id: str
    given: tuple[OrderRecord, ...]  # () : an order never placed
    when: When
    status: str | None = None  # the stored order's status after; None: nothing stored
    emits: tuple[str, ...] = ()
    reason: str | None = None  # why the order ended
    fields: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # "<type> <key>" -> fields
    stored: Mapping[str, object] = field(default_factory=dict)  # the stored order's fields
    detail: str = ""  # in OrderCancelled's detail (an invalid order says why)
    duplicate: bool = False
    raises: str = ""  # Unexpected's message (a regex): the record goes to the dead-letter topic


def invalid(name: str, order: OrderRecord, detail: str) -> Case:
    """A PlaceOrder the agent refuses: the order is cancelled INVALID at once, saying why; nothing reserved."""
    return Case(name, (), order, "CANCELLED", ("OrderCancelled o-1",), "INVALID", detail=detail,
                fields={"OrderCancelled o-1": {"refunded": False}}, stored={"deadline_ms": None})


def absorbed(name: str, given: tuple[OrderRecord, ...], when: When, status: str) -> Case:
    """A late or repeated record absorbed where the order is: it stays, nothing is emitted."""
    return Case(name, given, when, status)


THREE_LINES = place_order(line("SKU-A", 1), line("SKU-B", 1), line("SKU-C", 2, 500))
REFUND = {"RefundRequested o-1": {"payment_id": PAYMENT_ID, "amount": TOTAL}}

CASES = [
    # -- an order placed -----------------------------------------------------------------------------------
    Case("happy path: placed, one ReserveStock per line", (), place_order(), "PENDING",
         ("OrderPlaced o-1", "ReserveStock SKU-A", "ReserveStock SKU-B"),
         fields={"OrderPlaced o-1": {"total": TOTAL, "payment_token": "tok_approve"},
                 "ReserveStock SKU-A": {"quantity": 2}, "ReserveStock SKU-B": {"quantity": 1}},
         stored={"path": ["PENDING"], "deadline_step": "reservation_timeout", "deadline_ms": NOW + 60_000,
                 "total": {"amount_minor": 4500, "currency": "EUR"}}),
    Case("repeated skus make one line, their units added", (),
         place_order(line("SKU-A", 1), line("SKU-B", 1), line("SKU-A", 2)), "PENDING",
         ("OrderPlaced o-1", "ReserveStock SKU-A", "ReserveStock SKU-B"),
         fields={"ReserveStock SKU-A": {"quantity": 3}}),
    Case(f"{MAX_ORDER_LINES} lines, the most an order may have", (), place_order(*many_lines(MAX_ORDER_LINES)),
         "PENDING", ("OrderPlaced o-1", *(f"ReserveStock SKU-{i:03d}" for i in range(MAX_ORDER_LINES)))),
    Case(f"{MAX_LINE_QUANTITY} units of a sku, the most", (), place_order(line(quantity=MAX_LINE_QUANTITY)),
         "PENDING", ("OrderPlaced o-1", "ReserveStock SKU-A")),
    invalid(f"invalid: {MAX_ORDER_LINES + 1} lines", place_order(*many_lines(MAX_ORDER_LINES + 1)),
            f"at most {MAX_ORDER_LINES} lines"),
    invalid("invalid: zero quantity", place_order(line("SKU-A", 1), line("SKU-B", 0)), "SKU-B: quantity must be"),
    invalid(f"invalid: {MAX_LINE_QUANTITY + 1} units over two lines",
            place_order(line(quantity=MAX_LINE_QUANTITY), line(quantity=1)), "too many of SKU-A"),
    invalid("invalid: no lines", replace(place_order(), lines=()), "at least one line"),
    invalid("invalid: currency mismatch", place_order(line(currency="USD")), "priced in USD, the order is in EUR"),
    invalid("invalid: negative price", place_order(line(price=-1)), "SKU-A: negative price"),
    invalid("invalid: missing payment token", place_order(token=""), "no payment token"),
    # -- an answer for an order never placed -------------------------------------------------------------
    Case("unknown order: StockReserved raises", (), stock_reserved("SKU-A"), raises="never placed"),
    Case("unknown order: CancelOrder raises", (), cancel_order(), raises="CancelOrder for order o-1, which was never"),
    Case("unknown order: PaymentSucceeded raises", (), payment_succeeded(), raises="never placed"),
    Case("unknown order: a deadline is stale, nothing stored", (),
         step_timed_out("reservation_timeout", "PENDING", T0 + 60_000)),
    # -- PENDING -----------------------------------------------------------------------------------------
    Case("PENDING: one line of two reserved, waits", PLACED, stock_reserved("SKU-A", 2), "PENDING",
         stored={"reserved": ["SKU-A"], "deadline_ms": T0 + 60_000}),  # a self-transition does not re-arm
    Case("PENDING: last line reserved, payment requested", RESERVED[:2], stock_reserved("SKU-B"),
         "RESERVED", ("PaymentRequested o-1",),
         fields={"PaymentRequested o-1": {"amount": TOTAL, "payment_token": "tok_approve", "user_id": "u-1"}},
         stored={"path": ["PENDING", "RESERVED"], "deadline_step": "payment_timeout", "deadline_ms": NOW + 30_000}),
    Case("PENDING: a line's second StockReserved (new id) counts once", RESERVED[:2],
         stock_reserved("SKU-A", 2, copy=2), "PENDING", stored={"reserved": ["SKU-A"]}),
    Case("out of stock on one line of three: every line released, answered or not",
         (THREE_LINES, stock_reserved("SKU-A")), stock_rejected("SKU-B"), "CANCELLED",
         ("OrderCancelled o-1", *A_B, "ReleaseStock SKU-C"), "OUT_OF_STOCK",
         fields={"ReleaseStock SKU-C": {"quantity": 2, "consumed": False}},
         stored={"released": ["SKU-A", "SKU-B", "SKU-C"], "deadline_ms": None}),
    Case("cancel before payment (PENDING)", PLACED, cancel_order(), "CANCELLED", ("OrderCancelled o-1", *A_B),
         "BY_CUSTOMER", fields={"ReleaseStock SKU-A": {"quantity": 2, "consumed": False}}),
    Case("reservation timeout", PLACED, deadline_passed, "CANCELLED", ("OrderCancelled o-1", *A_B), "TIMEOUT",
         stored={"path": ["PENDING", "CANCELLED"], "deadline_ms": None}),
    Case("PENDING: stale StepTimedOut, deadline re-armed since", PLACED,
         step_timed_out("reservation_timeout", "PENDING", T0 + 59_999), "PENDING"),
    absorbed("PENDING: PlaceOrder retried under a new id", PLACED, place_order(copy=2), "PENDING"),
    Case("PENDING: PlaceOrder redelivered re-emits what it caused", PLACED, place_order(), None,
         ("OrderPlaced o-1", "ReserveStock SKU-A", "ReserveStock SKU-B"), duplicate=True),
    Case("PENDING: PaymentSucceeded before any request raises", PLACED, payment_succeeded(),
         raises="no rule for PaymentSucceeded in state PENDING"),
    # -- RESERVED ----------------------------------------------------------------------------------------
    Case("happy path: paid, confirmed, one CommitStock per line", RESERVED, payment_succeeded(), "CONFIRMED",
         ("OrderConfirmed o-1", "CommitStock SKU-A", "CommitStock SKU-B"),
         fields={"OrderConfirmed o-1": {"payment_id": PAYMENT_ID, "total": TOTAL},
                 "CommitStock SKU-A": {"quantity": 2}},
         stored={"path": ["PENDING", "RESERVED", "CONFIRMED"], "deadline_ms": None, "payment_id": PAYMENT_ID}),
    Case("payment declined", RESERVED, payment_failed(), "CANCELLED", ("OrderCancelled o-1", *A_B),
         "PAYMENT_FAILED"),
    Case("cancel before payment (RESERVED): the charge is not waited for", RESERVED, cancel_order(), "CANCELLED",
         ("OrderCancelled o-1", *A_B), "BY_CUSTOMER", stored={"refund_requested": False}),
    Case("payment timeout", RESERVED, deadline_passed, "CANCELLED", ("OrderCancelled o-1", *A_B), "TIMEOUT",
         stored={"path": ["PENDING", "RESERVED", "CANCELLED"]}),
    Case("RESERVED: stale reservation timeout, the order moved on", RESERVED,
         step_timed_out("reservation_timeout", "PENDING", T0 + 60_000), "RESERVED"),
    Case("PENDING: StockReserved of a sku the order has no line of raises (it would count as a line)",
         (*PLACED, stock_reserved("SKU-A", 2)), stock_reserved("SKU-Z"),
         raises="SKU-Z for order o-1, which has no line"),
    Case("RESERVED: StockReserved of a sku the order has no line of raises", RESERVED, stock_reserved("SKU-Z"),
         raises="no line of that sku"),
    Case("RESERVED: StockRejected raises (every line is reserved)", RESERVED, stock_rejected("SKU-A"),
         raises="no rule for StockRejected in state RESERVED"),
    absorbed("RESERVED: PlaceOrder retried", RESERVED, place_order(copy=2), "RESERVED"),
    # -- CONFIRMED ---------------------------------------------------------------------------------------
    Case("cancel after payment: refund, consumed units back", CONFIRMED, cancel_order(), "REFUNDED",
         ("OrderCancelled o-1", *A_B, "RefundRequested o-1"), "BY_CUSTOMER",
         fields={"OrderCancelled o-1": {"refunded": True}, "ReleaseStock SKU-A": {"consumed": True, "quantity": 2},
                 "ReleaseStock SKU-B": {"consumed": True}, **REFUND},
         stored={"refund_requested": True, "path": ["PENDING", "RESERVED", "CONFIRMED", "REFUNDED"]}),
    absorbed("CONFIRMED: PlaceOrder retried", CONFIRMED, place_order(copy=2), "CONFIRMED"),
    Case("CONFIRMED: stale payment timeout", CONFIRMED, step_timed_out("payment_timeout", "RESERVED", T0 + 30_002),
         "CONFIRMED"),
    Case("CONFIRMED: PaymentFailed raises", CONFIRMED, payment_failed(), raises="in state CONFIRMED"),
    # -- CANCELLED (the absorbs) -------------------------------------------------------------------------
    absorbed("CANCELLED: cancelled again", CANCELLED_WHILE_PENDING, cancel_order(copy=2), "CANCELLED"),
    absorbed("CANCELLED: PlaceOrder retried", CANCELLED_WHILE_PENDING, place_order(copy=2), "CANCELLED"),
    Case("CANCELLED: a late StockReserved, its release went with the cancel", CANCELLED_WHILE_PENDING,
         stock_reserved("SKU-A", 2), "CANCELLED", stored={"released": ["SKU-A", "SKU-B"]}),
    Case("CANCELLED: a StockReserved no cancel released is released, every line (invalid order)", INVALID,
         stock_reserved("SKU-A", 2), "CANCELLED", A_B, stored={"released": ["SKU-A", "SKU-B"]}),
    absorbed("CANCELLED: a late StockRejected", CANCELLED_WHILE_PENDING, stock_rejected("SKU-B"), "CANCELLED"),
    absorbed("CANCELLED: StockReleased acknowledged", CANCELLED_WHILE_PENDING, stock_released("SKU-A"), "CANCELLED"),
    Case("CANCELLED: a late capture is refunded", CANCELLED_WHILE_RESERVED, payment_succeeded(), "CANCELLED",
         ("RefundRequested o-1",), fields=REFUND, stored={"refund_requested": True, "payment_id": PAYMENT_ID}),
    Case("CANCELLED: a second late capture is refunded once", (*CANCELLED_WHILE_RESERVED, payment_succeeded()),
         payment_succeeded(copy=2), "CANCELLED"),
    absorbed("CANCELLED: a late PaymentFailed", CANCELLED_WHILE_RESERVED, payment_failed(), "CANCELLED"),
    absorbed("CANCELLED: PaymentRefunded acknowledged", (*CANCELLED_WHILE_RESERVED, payment_succeeded()),
             payment_refunded(), "CANCELLED"),
    # -- REFUNDED ----------------------------------------------------------------------------------------
    absorbed("REFUNDED: cancelled again", REFUNDED, cancel_order(copy=2), "REFUNDED"),
    absorbed("REFUNDED: PlaceOrder retried", REFUNDED, place_order(copy=2), "REFUNDED"),
    absorbed("REFUNDED: StockReleased acknowledged", REFUNDED, stock_released("SKU-B"), "REFUNDED"),
    absorbed("REFUNDED: PaymentRefunded acknowledged", REFUNDED, payment_refunded(), "REFUNDED"),
    Case("REFUNDED: PaymentSucceeded raises", REFUNDED, payment_succeeded(copy=2), raises="in state REFUNDED"),
]


def run(case: Case) -> tuple[str, OrderRecord, Result]:
    """The row's When applied to its Given; also the status the order had before (START: never placed)."""
    state = order_after(*case.given) if case.given else None
    before = state.status if state is not None else START
    record = case.when(state) if callable(case.when) and state is not None else case.when
    assert not callable(record)
    return before, record, handle_order(state, record, NOW, {})


@pytest.mark.parametrize("case", [c for c in CASES if not c.raises], ids=lambda c: c.id)
def test_given_an_order_when_a_record_arrives_then_its_state_and_what_it_emits(case: Case) -> None:
    _, record, result = run(case)

    assert emitted(result) == list(case.emits)
    assert result.duplicate is case.duplicate
    assert (result.state.status if result.state else None) == case.status
    if case.reason is not None:
        assert result.state is not None and result.state.reason == case.reason
    by_label = dict(zip(emitted(result), (o.record for o in result.outputs), strict=True))
    for label, expected in case.fields.items():
        assert {name: getattr(by_label[label], name) for name in expected} == expected, label
    if case.reason is not None and "OrderCancelled o-1" in by_label:
        assert getattr(by_label["OrderCancelled o-1"], "reason") == case.reason  # noqa: B009
    if case.detail:
        assert case.detail in (getattr(by_label["OrderCancelled o-1"], "detail") or "")  # noqa: B009
    for name, value in case.stored.items():
        assert result.state is not None and getattr(result.state, name) == value, name
    if result.state is not None:
        assert result.state.seen(record.event_id)
    assert len(set(emitted_ids(result))) == len(result.outputs)  # each output its own id


@pytest.mark.parametrize("case", [c for c in CASES if not c.raises], ids=lambda c: c.id)
def test_the_same_record_from_the_same_state_emits_the_same_ids(case: Case) -> None:
    _, _, first = run(case)
    _, _, second = run(case)

    assert emitted_ids(second) == emitted_ids(first)


@pytest.mark.parametrize("case", [c for c in CASES if c.status is not None], ids=lambda c: c.id)
def test_a_record_delivered_again_emits_again_what_it_caused_and_changes_nothing(case: Case) -> None:
    _, record, first = run(case)
    assert first.state is not None
    stored = as_stored(first.state)  # as the worker reads it back
    kept = encode(stored.to_dict())  # the bytes the table holds

    again = handle_order(stored, record, NOW + 5, {})

    assert again.duplicate and again.state is None
    assert [o.record for o in again.outputs] == [o.record for o in first.outputs]
    assert encode(stored.to_dict()) == kept


@pytest.mark.parametrize("case", [c for c in CASES if c.raises], ids=lambda c: c.id)
def test_a_record_without_a_rule_raises_unexpected_for_the_dead_letter_topic(case: Case) -> None:
    with pytest.raises(Unexpected, match=case.raises) as raised:
        run(case)

    assert raised.value.reason == "unexpected-record"


@pytest.mark.parametrize("case", [c for c in CASES if c.raises and c.given], ids=lambda c: c.id)
def test_a_refused_record_leaves_the_stored_order_as_it_was(case: Case) -> None:
    # The worker hands the handler state built on its table's value (lists shared, not copied); a record
    # that raises must not have changed them, or a later record of the batch would write the change.
    stored = order_after(*case.given).to_dict()
    kept = encode(stored)

    with pytest.raises(Unexpected):
        handle_order(OrderState.from_dict(stored), case.when, NOW, {})

    assert encode(stored) == kept


def test_every_transition_of_the_saga_is_taken_by_a_row() -> None:
    taken = {run(c)[2].transition for c in CASES if not c.raises}

    for t in ORDER_SAGA.transitions:
        trigger = t.trigger.name if isinstance(t.trigger, Timeout) else t.trigger.record.__name__
        assert (t.source, t.target, trigger) in taken, t


def test_every_absorb_of_the_saga_is_met_by_a_row() -> None:
    met = set()
    for case in (c for c in CASES if not c.raises):
        before, record, result = run(case)
        if result.transition is None and not result.duplicate and not isinstance(record, StepTimedOut):
            met.add((before, type(record)))
    for absorb in ORDER_SAGA.absorbs:
        assert isinstance(absorb, Absorb)
        for name in absorb.states:
            assert (name, absorb.trigger.record) in met, (name, absorb.why)


@pytest.mark.parametrize("timeouts,pending_s,reserved_s", [
    ({}, RESERVATION_TIMEOUT.seconds, PAYMENT_TIMEOUT.seconds),
    ({"reservation_timeout": 10, "payment_timeout": 3}, 10, 3),  # a deployment's override, by name
])
def test_entering_a_state_arms_its_deadline(timeouts: dict[str, float], pending_s: float, reserved_s: float) -> None:
    placed = handle_order(None, place_order(), T0, timeouts).state
    assert placed is not None and placed.deadline_ms == T0 + int(pending_s * 1000)

    reserved = order_after(*RESERVED, timeouts=timeouts)

    assert reserved.deadline_step == "payment_timeout"
    assert reserved.deadline_ms == T0 + len(RESERVED) - 1 + int(reserved_s * 1000)


def test_the_deadline_scanner_names_each_due_step_once() -> None:
    pending = order_after(*PLACED)
    stored = [(pending.order_id, pending.to_dict())]

    assert due_timeouts(stored, pending.deadline_ms - 1 if pending.deadline_ms else 0) == []
    first, again = (due_timeouts(stored, T0 + 61_000 + n) for n in (0, 1))
    assert [o.event_id for o in first] == [o.event_id for o in again]  # a rescan emits the same record
    assert [(o.short, o.key, getattr(o.record, "step")) for o in first] == [  # noqa: B009
        ("StepTimedOut", "o-1", "reservation_timeout")]
