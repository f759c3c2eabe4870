"""The order rules outside the saga's state machine, each written once: what makes an order's lines
acceptable (the edge, cart checkout and the orders agent all apply it, so a cart can never become an
order that ``POST /v1/orders`` would refuse), and the statuses of the orders read model, derived from
``ORDER_SAGA``.

The edge and the agent disagreed before (50 lines at the edge, 100 in the agent, and checkout checked
neither); settled on the edge's published 50, the limit clients already see in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from shopflow.topologies.saga import CANCELLED, ORDER_SAGA, PENDING, Outcome, Saga

MAX_ORDER_LINES = 50  # distinct skus in one order (and so in one cart)
MAX_LINE_QUANTITY = 1000  # units of one sku in one order


def lines_problem(lines: Iterable[tuple[str, int]]) -> str | None:
    """Why lines given as ``(sku, quantity)`` cannot make an order, or None when they can.

    Repeated skus count once (an order has one line per sku, their quantities added up)."""
    quantities: dict[str, int] = {}
    for sku, quantity in lines:
        if quantity < 1:
            return f"{sku}: quantity must be at least 1"
        quantities[sku] = quantities.get(sku, 0) + quantity
    if not quantities:
        return "an order needs at least one line"
    if len(quantities) > MAX_ORDER_LINES:
        return f"an order has at most {MAX_ORDER_LINES} lines (skus); this one has {len(quantities)}"
    too_many = sorted(sku for sku, q in quantities.items() if q > MAX_LINE_QUANTITY)
    if too_many:
        return f"an order takes at most {MAX_LINE_QUANTITY} units of a sku; too many of {', '.join(too_many)}"
    return None


# -- the orders read model (orders_view) ------------------------------------------------------------------
#
# What clients see of an order is what the saga publishes on its own topic (OrderPlaced, OrderConfirmed,
# OrderCancelled): the states a transition enters while emitting on ``ORDER_SAGA.events``. RESERVED is
# the saga's private business and never shown. Statuses only move forward, ranked by the saga's outcome
# (still open < went through < undone), so a late or replayed event never takes an order back; a status
# is final when the saga has no way out of it (CONFIRMED is not: a cancel refunds it).

_OUTCOME_RANK = {Outcome.OPEN: 1, Outcome.DONE: 2, Outcome.UNDONE: 3}


def _published_states(saga: Saga) -> tuple[str, ...]:
    entered = {t.target for t in saga.transitions if any(e.message.topic == saga.events for e in t.emits)}
    return tuple(s.name for s in saga.states if s.name in entered)


ORDER_STATUSES: tuple[str, ...] = _published_states(ORDER_SAGA)  # PENDING, CONFIRMED, CANCELLED, REFUNDED
ORDER_STATUS_RANK: Mapping[str, int] = MappingProxyType(
    {name: _OUTCOME_RANK[ORDER_SAGA.state(name).outcome] for name in ORDER_STATUSES})
FINAL_ORDER_STATUSES: frozenset[str] = frozenset(
    name for name in ORDER_STATUSES if not any(t.source == name for t in ORDER_SAGA.transitions))
# The rank an order reaches once its PlaceOrder is applied, and once a cancel is.
RANK_PLACED = ORDER_STATUS_RANK[PENDING]
RANK_CANCELLED = ORDER_STATUS_RANK[CANCELLED]

# The projection NOTIFYs this channel with the order id after every change to ``orders_view``.
ORDERS_VIEW_CHANNEL = "shopflow_orders_view"
