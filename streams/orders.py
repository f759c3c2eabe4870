"""The orders agent's logic: each order's saga, driven by the rules declared in topologies/saga.py.

``handle_order`` takes an order's state and one record (a command, an inventory or payments answer,
or a StepTimedOut from the deadline scanner) and returns the new state and the records to emit. It
looks the rule up in ``ORDER_SAGA`` for the order's state and the record, picks among rules by their
guards (``GUARDS``), emits what the rule declares and compensates each effect where it is known to
have happened. It is pure (no I/O, time passed in), so the Faust agent and the replay harness run
the very same code.

Idempotency: a record whose event id the order has processed changes nothing and emits again what it
caused the first time (kept in the order's state); a record that arrives late or twice meets an
Absorb rule of its state; emitted ids derive from the cause's id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from shopflow.streams.runtime import Output, Result, Unexpected, derived_event_id
from shopflow.tables.values import OrderState
from shopflow.topologies.catalog import ORDER_COMMANDS
from shopflow.topologies.saga import (
    COMMIT_STOCK,
    CONFIRMED,
    ORDER_CANCELLED,
    ORDER_CONFIRMED,
    ORDER_PLACED,
    ORDER_SAGA,
    PAYMENT,
    PAYMENT_REQUESTED,
    PAYMENT_SUCCEEDED,
    REFUND_REQUESTED,
    RELEASE_STOCK,
    RESERVE_STOCK,
    START,
    STOCK,
    STOCK_RESERVED,
    Emit,
    Rule,
    Transition,
)

PLACE_ORDER = "shopflow.orders.PlaceOrder"
CANCEL_ORDER = "shopflow.orders.CancelOrder"
STEP_TIMED_OUT = "shopflow.orders.StepTimedOut"
MAX_LINES = 100


def validation_problem(value: dict) -> str | None:
    """Why a PlaceOrder cannot become an order, or None when it can."""
    lines = value.get("lines") or []
    if not lines:
        return "an order needs at least one line"
    if len(lines) > MAX_LINES:
        return f"an order has at most {MAX_LINES} lines"
    currency = value.get("currency")
    for line in lines:
        if line["quantity"] < 1:
            return f"{line['sku']}: quantity must be at least 1"
        if line["unit_price"]["amount_minor"] < 0:
            return f"{line['sku']}: negative price"
        if line["unit_price"]["currency"] != currency:
            return f"{line['sku']}: priced in {line['unit_price']['currency']}, the order is in {currency}"
    if not value.get("payment_token"):
        return "no payment token"
    return None


def _merge_lines(lines: list[dict]) -> list[dict]:
    """One line per sku (OrderPlaced's contract), quantities of repeated skus added up."""
    merged: dict[str, dict] = {}
    for line in lines:
        if line["sku"] in merged:
            merged[line["sku"]]["quantity"] += line["quantity"]
        else:
            merged[line["sku"]] = {"sku": line["sku"], "quantity": line["quantity"], "unit_price": dict(line["unit_price"])}
    return list(merged.values())


# The saga names its guards; these say what each means. A test checks every guard has one.
GUARDS: dict[str, Callable[[OrderState | None, dict], bool]] = {
    "valid": lambda state, value: validation_problem(value) is None,
    "invalid": lambda state, value: validation_problem(value) is not None,
    "lines still unanswered": lambda state, value: len(set(state.reserved)) < len(state.lines),
    "all lines reserved": lambda state, value: len(set(state.reserved)) >= len(state.lines),
}


def handle_order(
    state: OrderState | None, record: str, value: dict, now_ms: int, timeouts: Mapping[str, float]
) -> Result:
    """Apply one record to one order. ``timeouts`` gives each saga timeout's seconds by name."""
    event_id = value["event_id"]
    if state is not None and state.seen(event_id):
        # Met before: its state change is kept, but its records may have been lost with a crashed
        # worker, so they are emitted again (same ids: whoever got them drops the copies).
        return Result(outputs=[Output.restore(o) for o in state.caused.get(event_id, ())], duplicate=True)
    if record == STEP_TIMED_OUT:
        if state is None or state.status != value["state"] or state.deadline_ms != _ms(value["deadline"]):
            return Result(state=_remembered(state, event_id) if state else None)  # stale: moved on or re-armed
        trigger = value["step"]
    else:
        trigger = record

    current = state.status if state is not None else START
    if state is None and record != PLACE_ORDER:
        raise Unexpected(f"{_short(record)} for order {value['order_id']}, which was never placed")
    if state is None:
        state = _new_order(value, now_ms)

    _note_evidence(state, record, value)
    rule = _pick(ORDER_SAGA.rules(current, trigger), state, value, current, trigger)
    outputs = [_build(emit, state, value, event_id, i, now_ms) for i, emit in enumerate(_own(rule))]
    outputs = [o for group in outputs for o in group]
    outputs += _compensate(rule, state, event_id, now_ms)

    transition = None
    if isinstance(rule, Transition):
        if rule.target != current:
            _enter(state, rule.target, now_ms, timeouts)
        transition = (current, rule.target, _short(trigger))
        if rule.target != current and ORDER_SAGA.state(rule.target).terminal and state.reason is None:
            state.reason = next((e.value("reason") for e in rule.emits if e.value("reason")), None)
    state.updated_ms = now_ms
    state.remember(event_id, outputs)
    return Result(state=state, outputs=outputs, transition=transition)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _ms(value) -> int:
    return value if isinstance(value, int) else int(value.timestamp() * 1000)


def _remembered(state: OrderState, event_id: str) -> OrderState:
    state.remember(event_id)
    return state


def _new_order(value: dict, now_ms: int) -> OrderState:
    lines = _merge_lines(value.get("lines") or [])
    total = sum(line["quantity"] * line["unit_price"]["amount_minor"] for line in lines)
    return OrderState(
        order_id=value["order_id"], user_id=value["user_id"], status=START, lines=lines,
        total={"amount_minor": total, "currency": value.get("currency", "")},
        payment_token=value.get("payment_token", ""), created_ms=now_ms, updated_ms=now_ms,
    )


def _note_evidence(state: OrderState, record: str, value: dict) -> None:
    """Record what an answer proves happened, before guards and compensations look at the state."""
    if record == STOCK_RESERVED.record and value["sku"] not in state.reserved:
        state.reserved.append(value["sku"])
    elif record == PAYMENT_SUCCEEDED.record:
        state.payment_id = value["payment_id"]


def _pick(rules: tuple[Rule, ...], state: OrderState, value: dict, current: str, trigger: str) -> Rule:
    if not rules:
        raise Unexpected(f"no rule for {_short(trigger)} in state {current} (order {state.order_id})")
    for rule in rules:
        guard = rule.guard if isinstance(rule, Transition) else ""
        if not guard or GUARDS[guard](state, value):
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


def _compensate(rule: Rule, state: OrderState, cause: str, now_ms: int) -> list[Output]:
    """Undo every effect that may have happened. Every line not released yet is released, answered or
    not: its answer may be in flight or lost, and a release of nothing changes nothing at the inventory."""
    outputs: list[Output] = []
    for effect in rule.compensates:
        if effect == STOCK:
            consumed = state.status == CONFIRMED  # the confirmed order's CommitStock consumed every line
            for line in [line for line in state.lines if line["sku"] not in state.released]:
                state.released.append(line["sku"])
                outputs.append(Output(RELEASE_STOCK.topic, RELEASE_STOCK.record, {
                    "event_id": derived_event_id(cause, "release", line["sku"]), "order_id": state.order_id,
                    "sku": line["sku"], "quantity": line["quantity"], "consumed": consumed, "occurred_at": now_ms,
                }))
        elif effect == PAYMENT and state.payment_id and not state.refund_requested:
            state.refund_requested = True
            outputs.append(Output(REFUND_REQUESTED.topic, REFUND_REQUESTED.record, {
                "event_id": derived_event_id(cause, "refund"), "order_id": state.order_id,
                "payment_id": state.payment_id, "amount": state.total, "occurred_at": now_ms,
            }))
    return outputs


def _build(emit: Emit, state: OrderState, cause_value: dict, cause: str, index: int, now_ms: int) -> list[Output]:
    """The records of one Emit, filled from the order's state and the record that caused them."""
    record, topic = emit.message.record, emit.message.topic
    base = {"order_id": state.order_id, "occurred_at": now_ms}
    if record == ORDER_PLACED.record:
        values = [{**base, "user_id": state.user_id, "lines": state.lines, "total": state.total,
                   "payment_token": state.payment_token}]
    elif record == ORDER_CONFIRMED.record:
        values = [{**base, "user_id": state.user_id, "total": state.total, "payment_id": state.payment_id}]
    elif record == ORDER_CANCELLED.record:
        reason = emit.value("reason")
        detail = validation_problem(cause_value) if reason == "INVALID" else None
        values = [{**base, "user_id": state.user_id, "reason": reason, "detail": detail,
                   "refunded": bool(emit.value("refunded"))}]
    elif record == PAYMENT_REQUESTED.record:
        values = [{**base, "user_id": state.user_id, "amount": state.total, "payment_token": state.payment_token}]
    elif record in (COMMIT_STOCK.record, RESERVE_STOCK.record):
        values = [{**base, "sku": line["sku"], "quantity": line["quantity"]} for line in state.lines]
    else:
        raise Unexpected(f"the orders agent has no way to build {_short(record)}")
    return [
        Output(topic, record, {"event_id": derived_event_id(cause, _short(record), index, n), **v})
        for n, v in enumerate(values)
    ]


def due_timeouts(orders: Iterable[tuple[str, dict]], now_ms: int) -> list[Output]:
    """StepTimedOut for every stored order whose step deadline has passed (the deadline scanner).

    Scanning again before the first one is processed emits the same record (same event id), which the
    order drops as already processed.
    """
    due = []
    for order_id, stored in orders:
        deadline = stored.get("deadline_ms")
        if deadline is not None and deadline <= now_ms:
            due.append(Output(ORDER_COMMANDS, STEP_TIMED_OUT, {
                "event_id": derived_event_id(order_id, stored["deadline_step"], deadline),
                "order_id": order_id, "step": stored["deadline_step"], "state": stored["status"],
                "deadline": deadline, "occurred_at": now_ms,
            }))
    return due
