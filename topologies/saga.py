"""The order saga declared as data: its states, the rules that move an order between them, the effects
it causes in other contexts and how each is undone. The orders agent looks its rules up
(`ORDER_SAGA.rules(state, record class)`), `saga_check.check` proves the declaration sound and
`saga_draw.mermaid` draws it, so the agent, the diagram and the replay tests cannot drift apart; the
vocabulary (State, Message, Transition, ...) is `saga_model`.

How to read it:

- An order is created by the first rule that fires from `START` (a PlaceOrder for an unknown id) and
  then lives in one state. A `Transition` moves it on a trigger: a record arriving on a catalog topic,
  or a `Timeout` armed when the state is entered. Several transitions on one trigger are told apart by
  their guards.
- An `Effect` is something another context does at the saga's request and that must be undone if the
  order does not go through: stock reserved (undone by ReleaseStock, answered by StockReleased) and
  payment captured (undone by RefundRequested, answered by PaymentRefunded). A transition names the
  effects it compensates; their commands are emitted for every line (or the charge) where the effect
  may have happened: every line not released yet, answered or not (a release of nothing changes
  nothing), and the charge once a capture is known.
- An `Absorb` handles a late or duplicate record in a state without moving the order: it changes
  nothing or it compensates. Answers to requests that were still in flight when an order was cancelled
  land here: a late StockReserved is released and a late PaymentSucceeded is refunded.
- A record with no rule in the order's state cannot happen in a sound saga (`check` proves every
  record that can reach a state has a rule there); an agent meeting one sends it to the dead-letter topic.

There is no CANCELLING state that waits for StockReleased/PaymentRefunded before the order ends:
compensations are commands that cannot be refused (a release of a reservation that is gone changes
nothing; the payments agent retries a refund until the gateway answers) and they are produced in the
same commit as the state change, so waiting for their acknowledgements would add a state that can only
stall. The acknowledgements are absorbed in the terminal states and matched by the live auditor.
"""

from __future__ import annotations

from typing import Final

from shopflow.schemas.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockRejected,
    StockReleased,
    StockReserved,
)
from shopflow.schemas.orders import CancelOrder, OrderCancelled, OrderConfirmed, OrderPlaced, PlaceOrder
from shopflow.schemas.payments import (
    PaymentFailed,
    PaymentRefunded,
    PaymentRequested,
    PaymentSucceeded,
    RefundRequested,
)
from shopflow.topologies.catalog import (
    ORDER_COMMANDS,
    ORDERS,
    PAYMENT_REQUESTS,
    PAYMENT_RESULTS,
    STOCK_REQUESTS,
    STOCK_RESULTS,
)
from shopflow.topologies.saga_model import (
    START,
    Absorb,
    Effect,
    Emit,
    FieldValue,
    Message,
    Outcome,
    Saga,
    State,
    Timeout,
    Transition,
)

__all__ = [
    "CANCELLED", "CONFIRMED", "ORDER_SAGA", "PENDING", "REFUNDED", "RESERVED", "START", "Outcome", "Saga",
]

PENDING: Final = "PENDING"
RESERVED: Final = "RESERVED"
CONFIRMED: Final = "CONFIRMED"
CANCELLED: Final = "CANCELLED"
REFUNDED: Final = "REFUNDED"

PLACE_ORDER = Message(ORDER_COMMANDS, PlaceOrder)
CANCEL_ORDER = Message(ORDER_COMMANDS, CancelOrder)
ORDER_PLACED = Message(ORDERS, OrderPlaced)
ORDER_CONFIRMED = Message(ORDERS, OrderConfirmed)
ORDER_CANCELLED = Message(ORDERS, OrderCancelled)
RESERVE_STOCK = Message(STOCK_REQUESTS, ReserveStock)
RELEASE_STOCK = Message(STOCK_REQUESTS, ReleaseStock)
COMMIT_STOCK = Message(STOCK_REQUESTS, CommitStock)
STOCK_RESERVED = Message(STOCK_RESULTS, StockReserved)
STOCK_REJECTED = Message(STOCK_RESULTS, StockRejected)
STOCK_RELEASED = Message(STOCK_RESULTS, StockReleased)
PAYMENT_REQUESTED = Message(PAYMENT_REQUESTS, PaymentRequested)
REFUND_REQUESTED = Message(PAYMENT_REQUESTS, RefundRequested)
PAYMENT_SUCCEEDED = Message(PAYMENT_RESULTS, PaymentSucceeded)
PAYMENT_FAILED = Message(PAYMENT_RESULTS, PaymentFailed)
PAYMENT_REFUNDED = Message(PAYMENT_RESULTS, PaymentRefunded)

# Inventory answers within milliseconds, so a minute only passes under real lag (a rebalance); a
# payment provider that has not answered in 30 s is not going to, and the customer is waiting.
RESERVATION_TIMEOUT = Timeout("reservation_timeout", 60)
PAYMENT_TIMEOUT = Timeout("payment_timeout", 30)

STOCK = "stock reserved"
PAYMENT = "payment captured"


def _cancelled(reason: str, refunded: bool = False) -> Emit:
    values: tuple[tuple[str, FieldValue], ...] = (("reason", reason),)
    return Emit(ORDER_CANCELLED, values=values + ((("refunded", True),) if refunded else ()))


ORDER_SAGA = Saga(
    name="order",
    events=ORDERS,
    states=(
        State(PENDING, "placed, reserving stock"),
        State(RESERVED, "all lines reserved, payment requested"),
        State(CONFIRMED, "paid, stock kept for the order", Outcome.DONE),
        State(CANCELLED, "ended without going through, reservations released", Outcome.UNDONE),
        State(REFUNDED, "cancelled after payment, charge refunded and stock released", Outcome.UNDONE),
    ),
    effects=(
        Effect(STOCK, "line", RESERVE_STOCK, STOCK_RESERVED, STOCK_REJECTED, RELEASE_STOCK, STOCK_RELEASED,
               settlement=COMMIT_STOCK),
        Effect(PAYMENT, "order", PAYMENT_REQUESTED, PAYMENT_SUCCEEDED, PAYMENT_FAILED, REFUND_REQUESTED,
               PAYMENT_REFUNDED),
    ),
    transitions=(
        Transition(START, PENDING, PLACE_ORDER, "valid", emits=(
            Emit(ORDER_PLACED),
            Emit(RESERVE_STOCK, per_line=True),
        )),
        Transition(START, CANCELLED, PLACE_ORDER, "invalid", emits=(_cancelled("INVALID"),)),
        Transition(PENDING, PENDING, STOCK_RESERVED, "lines still unanswered"),
        Transition(PENDING, RESERVED, STOCK_RESERVED, "all lines reserved",
                   emits=(Emit(PAYMENT_REQUESTED),), settles=(STOCK,)),
        # The other lines' answers may still be in flight: CANCELLED releases them when they land.
        Transition(PENDING, CANCELLED, STOCK_REJECTED, emits=(_cancelled("OUT_OF_STOCK"),),
                   compensates=(STOCK,)),
        Transition(PENDING, CANCELLED, CANCEL_ORDER, emits=(_cancelled("BY_CUSTOMER"),), compensates=(STOCK,)),
        Transition(PENDING, CANCELLED, RESERVATION_TIMEOUT, emits=(_cancelled("TIMEOUT"),),
                   compensates=(STOCK,)),
        # A confirmed order consumes its reservations (on_hand and reserved both drop); a later
        # ReleaseStock of a consumed reservation (cancel after payment) puts the units back.
        Transition(RESERVED, CONFIRMED, PAYMENT_SUCCEEDED,
                   emits=(Emit(ORDER_CONFIRMED), Emit(COMMIT_STOCK, per_line=True)), settles=(PAYMENT,)),
        Transition(RESERVED, CANCELLED, PAYMENT_FAILED, emits=(_cancelled("PAYMENT_FAILED"),),
                   compensates=(STOCK,), settles=(PAYMENT,)),
        # Cancelling does not wait for the charge's outcome: a capture landing later is refunded.
        Transition(RESERVED, CANCELLED, CANCEL_ORDER, emits=(_cancelled("BY_CUSTOMER"),), compensates=(STOCK,)),
        Transition(RESERVED, CANCELLED, PAYMENT_TIMEOUT, emits=(_cancelled("TIMEOUT"),), compensates=(STOCK,)),
        Transition(CONFIRMED, REFUNDED, CANCEL_ORDER, emits=(_cancelled("BY_CUSTOMER", refunded=True),),
                   compensates=(STOCK, PAYMENT)),
    ),
    absorbs=(
        Absorb((PENDING, RESERVED, CONFIRMED, CANCELLED, REFUNDED), PLACE_ORDER,
               "a retried PlaceOrder: the order id is taken"),
        Absorb((CANCELLED, REFUNDED), CANCEL_ORDER, "already cancelled"),
        Absorb((CANCELLED,), STOCK_RESERVED, "a line reserved after the order was cancelled",
               compensates=(STOCK,)),
        Absorb((CANCELLED,), STOCK_REJECTED, "a line rejected after the order was cancelled: nothing to release"),
        Absorb((CANCELLED, REFUNDED), STOCK_RELEASED, "a release done; the auditor matches it"),
        Absorb((CANCELLED,), PAYMENT_SUCCEEDED, "a charge captured after the order was cancelled",
               compensates=(PAYMENT,)),
        Absorb((CANCELLED,), PAYMENT_FAILED, "a charge failed after the order was cancelled: nothing to refund"),
        Absorb((CANCELLED, REFUNDED), PAYMENT_REFUNDED, "a refund done; the auditor matches it"),
    ),
)
