"""The orders agent's logic: each order's saga, driven by the rules declared in topologies/saga.py.

``handle_order`` takes an order's state and one record (a command, an inventory or payments answer,
or a StepTimedOut from the deadline scanner) and returns the new state and the records to emit. It
looks the rule up in ``ORDER_SAGA`` for the order's state and the record's class, picks among rules
by their guards (``GUARDS``), emits what the rule declares and compensates each effect where it is
known to have happened. It is pure (no I/O, time passed in), so the Faust agent and the replay
harness run the very same code.

Idempotency: a record whose event id the order has processed changes nothing and emits again what it
caused the first time (kept in the order's state); a record that arrives late or twice meets an
Absorb rule of its state; emitted ids derive from the cause's id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from shopflow.schemas.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockRejected,
    StockReleased,
    StockReserved,
)
from shopflow.schemas.orders import (
    CancelOrder,
    CancelReason,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    PlaceOrder,
    StepTimedOut,
)
from shopflow.schemas.payments import (
    PaymentFailed,
    PaymentRefunded,
    PaymentRequested,
    PaymentSucceeded,
    RefundRequested,
)
from shopflow.schemas.records import AvroRecord, Money, OrderLine, datetime_of_ms, ms_of
from shopflow.streams.runtime import Output, Result, Unexpected, derived_event_id
from shopflow.tables.values import OrderState
from shopflow.topologies.orders import lines_problem
from shopflow.topologies.saga import CONFIRMED, ORDER_SAGA, PAYMENT, START, STOCK
from shopflow.topologies.saga_model import Emit, Rule, Transition

# Everything that reaches the orders agent: its commands, and the answers of inventory and payments.
OrderRecord = (PlaceOrder | CancelOrder | StepTimedOut | StockReserved | StockRejected | StockReleased
               | PaymentSucceeded | PaymentFailed | PaymentRefunded)


def validation_problem(order: PlaceOrder) -> str | None:
    """Why a PlaceOrder cannot become an order, or None when it can: the order-lines rule every entry
    point shares (topologies/orders.py), then what only the agent sees (prices, currency, token)."""
    problem = lines_problem((line.sku, line.quantity) for line in order.lines)
    if problem is not None:
        return problem
    for line in order.lines:
        if line.unit_price.amount_minor < 0:
            return f"{line.sku}: negative price"
        if line.unit_price.currency != order.currency:
            return f"{line.sku}: priced in {line.unit_price.currency}, the order is in {order.currency}"
    if not order.payment_token:
        return "no payment token"
    return None


def _problem(record: OrderRecord) -> str | None:
    return validation_problem(record) if isinstance(record, PlaceOrder) else None


def _merge_lines(lines: Iterable[OrderLine]) -> list[dict[str, Any]]:
    """One line per sku (OrderPlaced's contract), quantities of repeated skus added up, as the state keeps them."""
    merged: dict[str, dict[str, Any]] = {}
    for line in lines:
        if line.sku in merged:
            merged[line.sku]["quantity"] += line.quantity
        else:
            merged[line.sku] = {"sku": line.sku, "quantity": line.quantity, "unit_price": line.unit_price.to_avro()}
    return list(merged.values())


# The saga names its guards; these say what each means. A test checks every guard has one.
GUARDS: dict[str, Callable[[OrderState, OrderRecord], bool]] = {
    "valid": lambda state, record: _problem(record) is None,
    "invalid": lambda state, record: _problem(record) is not None,
    "lines still unanswered": lambda state, record: len(set(state.reserved)) < len(state.lines),
    "all lines reserved": lambda state, record: len(set(state.reserved)) >= len(state.lines),
}


def handle_order(
    state: OrderState | None, record: OrderRecord, now_ms: int, timeouts: Mapping[str, float]
) -> Result:
    """Apply one record to one order. ``timeouts`` gives each saga timeout's seconds by name."""
    event_id = record.event_id
    if state is not None and state.seen(event_id):
        # Met before: its state change is kept, but its records may have been lost with a crashed
        # worker, so they are emitted again (same ids: whoever got them drops the copies).
        return Result(outputs=[Output.restore(o) for o in state.caused.get(event_id, ())], duplicate=True)
    trigger: type[AvroRecord] | str
    if isinstance(record, StepTimedOut):
        if state is None or state.status != record.state or state.deadline_ms != ms_of(record.deadline):
            return Result(state=_remembered(state, event_id) if state else None)  # stale: moved on or re-armed
        trigger = record.step
    else:
        trigger = type(record)

    current = state.status if state is not None else START
    if state is None:
        if not isinstance(record, PlaceOrder):
            raise Unexpected(f"{_short(trigger)} for order {record.order_id}, which was never placed")
        state = _new_order(record, now_ms)

    _note_evidence(state, record)
    rule = _pick(ORDER_SAGA.rules(current, trigger), state, record, current, trigger)
    at = datetime_of_ms(now_ms)
    outputs = [o for i, emit in enumerate(_own(rule)) for o in _build(emit, state, record, event_id, i, at)]
    outputs += _compensate(rule, state, event_id, at)

    transition = None
    if isinstance(rule, Transition):
        if rule.target != current:
            _enter(state, rule.target, now_ms, timeouts)
        transition = (current, rule.target, _short(trigger))
        if rule.target != current and ORDER_SAGA.state(rule.target).terminal and state.reason is None:
            reason = next((e.value("reason") for e in rule.emits if e.value("reason")), None)
            state.reason = None if reason is None else str(reason)
    state.updated_ms = now_ms
    state.remember(event_id, outputs)
    return Result(state=state, outputs=outputs, transition=transition)


def _short(trigger: type[AvroRecord] | str) -> str:
    return trigger if isinstance(trigger, str) else trigger.__name__


def _remembered(state: OrderState, event_id: str) -> OrderState:
    state.remember(event_id)
    return state


def _new_order(order: PlaceOrder, now_ms: int) -> OrderState:
    lines = _merge_lines(order.lines)
    total = sum(line["quantity"] * line["unit_price"]["amount_minor"] for line in lines)
    return OrderState(
        order_id=order.order_id, user_id=order.user_id, status=START, lines=lines,
        total={"amount_minor": total, "currency": order.currency},
        payment_token=order.payment_token, created_ms=now_ms, updated_ms=now_ms,
    )


def _note_evidence(state: OrderState, record: OrderRecord) -> None:
    """Record what an answer proves happened, before guards and compensations look at the state.

    A stock answer for a sku the order has no line of cannot answer its requests: it is refused (dead
    letter) rather than counted towards "all lines reserved"."""
    if isinstance(record, StockReserved | StockRejected | StockReleased):
        if all(line["sku"] != record.sku for line in state.lines):
            raise Unexpected(f"{_short(type(record))} of {record.sku} for order {state.order_id}, "
                             "which has no line of that sku")
        if isinstance(record, StockReserved) and record.sku not in state.reserved:
            # A new list, not an append: the loaded value shares its lists, and must stay as stored if
            # no rule takes the record.
            state.reserved = [*state.reserved, record.sku]
    elif isinstance(record, PaymentSucceeded):
        state.payment_id = record.payment_id


def _pick(rules: tuple[Rule, ...], state: OrderState, record: OrderRecord, current: str,
          trigger: type[AvroRecord] | str) -> Rule:
    if not rules:
        raise Unexpected(f"no rule for {_short(trigger)} in state {current} (order {state.order_id})")
    for rule in rules:
        guard = rule.guard if isinstance(rule, Transition) else ""
        if not guard or GUARDS[guard](state, record):
            return rule
    raise Unexpected(f"no guard of {_short(trigger)} in state {current} holds (order {state.order_id})")


def _own(rule: Rule) -> tuple[Emit, ...]:
    """The records this agent emits itself; a noted emit is another agent's."""
    return tuple(e for e in rule.emits if not e.note) if isinstance(rule, Transition) else ()


def _enter(state: OrderState, target: str, now_ms: int, timeouts: Mapping[str, float]) -> None:
    state.status = target
    state.path.append(target)
    armed = ORDER_SAGA.timeouts(target)
    if armed:
        step = armed[0]
        state.deadline_step = step.name
        state.deadline_ms = now_ms + int(1000 * timeouts.get(step.name, step.seconds))
    else:
        state.deadline_step = state.deadline_ms = None


def _compensate(rule: Rule, state: OrderState, cause: str, at: datetime) -> list[Output]:
    """Undo every effect that may have happened. Every line not released yet is released, answered or
    not: its answer may be in flight or lost, and a release of nothing changes nothing at the inventory."""
    outputs: list[Output] = []
    for effect in rule.compensates:
        if effect == STOCK:
            consumed = state.status == CONFIRMED  # the confirmed order's CommitStock consumed every line
            for line in [line for line in state.lines if line["sku"] not in state.released]:
                state.released.append(line["sku"])
                outputs.append(Output(ReleaseStock(
                    event_id=derived_event_id(cause, "release", line["sku"]), order_id=state.order_id,
                    sku=line["sku"], quantity=line["quantity"], consumed=consumed, occurred_at=at,
                )))
        elif effect == PAYMENT and state.payment_id and not state.refund_requested:
            state.refund_requested = True
            outputs.append(Output(RefundRequested(
                event_id=derived_event_id(cause, "refund"), order_id=state.order_id,
                payment_id=state.payment_id, amount=Money.of_stored(state.total), occurred_at=at,
            )))
    return outputs


# How the records an Emit names are filled from the order's state, the Emit and the record that caused
# them; ``ids(n)`` is the event id of the nth record of the Emit.
_Build = Callable[[OrderState, Emit, OrderRecord, Callable[[int], str], datetime], list[AvroRecord]]


def _order_placed(state: OrderState, emit: Emit, cause: OrderRecord, ids: Callable[[int], str],
                  at: datetime) -> list[AvroRecord]:
    lines = tuple(OrderLine(line["sku"], line["quantity"], Money(**line["unit_price"])) for line in state.lines)
    total = Money.of_stored(state.total)
    return [OrderPlaced(ids(0), state.order_id, state.user_id, lines, total, state.payment_token, at)]


def _order_confirmed(state: OrderState, emit: Emit, cause: OrderRecord, ids: Callable[[int], str],
                     at: datetime) -> list[AvroRecord]:
    total = Money.of_stored(state.total)
    return [OrderConfirmed(ids(0), state.order_id, state.user_id, total, state.payment_id or "", at)]


def _order_cancelled(state: OrderState, emit: Emit, cause: OrderRecord, ids: Callable[[int], str],
                     at: datetime) -> list[AvroRecord]:
    reason = CancelReason(str(emit.value("reason")))
    return [OrderCancelled(
        event_id=ids(0), order_id=state.order_id, user_id=state.user_id, reason=reason,
        detail=_problem(cause) if reason is CancelReason.INVALID else None,
        refunded=bool(emit.value("refunded")), occurred_at=at,
    )]


def _payment_requested(state: OrderState, emit: Emit, cause: OrderRecord, ids: Callable[[int], str],
                       at: datetime) -> list[AvroRecord]:
    total = Money.of_stored(state.total)
    return [PaymentRequested(ids(0), state.order_id, state.user_id, total, state.payment_token, at)]


def _per_line(record: type[ReserveStock] | type[CommitStock]) -> _Build:
    def build(state: OrderState, emit: Emit, cause: OrderRecord, ids: Callable[[int], str],
              at: datetime) -> list[AvroRecord]:
        return [record(event_id=ids(n), order_id=state.order_id, sku=line["sku"], quantity=line["quantity"],
                       occurred_at=at) for n, line in enumerate(state.lines)]
    return build


_BUILDERS: dict[type[AvroRecord], _Build] = {
    OrderPlaced: _order_placed,
    OrderConfirmed: _order_confirmed,
    OrderCancelled: _order_cancelled,
    PaymentRequested: _payment_requested,
    ReserveStock: _per_line(ReserveStock),
    CommitStock: _per_line(CommitStock),
}


def _build(emit: Emit, state: OrderState, cause: OrderRecord, cause_id: str, index: int,
           at: datetime) -> list[Output]:
    """The records of one Emit, filled from the order's state and the record that caused them."""
    record = emit.message.record
    build = _BUILDERS.get(record)
    if build is None:
        raise Unexpected(f"the orders agent has no way to build {record.__name__}")
    name = record.__name__
    return [Output(r) for r in build(state, emit, cause, lambda n: derived_event_id(cause_id, name, index, n), at)]


def due_timeouts(orders: Iterable[tuple[str, dict[str, Any]]], now_ms: int) -> list[Output]:
    """StepTimedOut for every stored order whose step deadline has passed (the deadline scanner).

    Scanning again before the first one is processed emits the same record (same event id), which the
    order drops as already processed.
    """
    due = []
    at = datetime_of_ms(now_ms)
    for order_id, stored in orders:
        deadline = stored.get("deadline_ms")
        if deadline is not None and deadline <= now_ms:
            due.append(Output(StepTimedOut(
                event_id=derived_event_id(order_id, stored["deadline_step"], deadline), order_id=order_id,
                step=stored["deadline_step"], state=stored["status"], deadline=datetime_of_ms(deadline),
                occurred_at=at,
            )))
    return due
