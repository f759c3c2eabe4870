"""The carts agent's logic: each cart's items, idle expiry and checkout.

One cart per user (the cart id is the user id). Commands come from the edge on cart-commands;
CartExpired comes from the worker's expiry scanner on cart-events, and is applied only if the cart
has not changed since the scanner saw it idle. Checkout is priced and placed by the edge (it owns
prices); CheckoutCart then closes the cart with the order it became.
"""

from __future__ import annotations

from collections.abc import Iterable

from shopflow.streams.runtime import Output, Result, Unexpected, derived_event_id
from shopflow.tables.values import CartState
from shopflow.topologies.catalog import CART_EVENTS

ADD = "shopflow.carts.AddCartItem"
REMOVE = "shopflow.carts.RemoveCartItem"
CLEAR = "shopflow.carts.ClearCart"
CHECKOUT = "shopflow.carts.CheckoutCart"
EXPIRED = "shopflow.carts.CartExpired"


def handle_cart(state: CartState | None, record: str, value: dict, now_ms: int, idle_ms: int) -> Result:
    event_id = value["event_id"]
    if state is not None and state.seen(event_id):
        return Result(duplicate=True)
    if record == EXPIRED:
        if state is None or state.status != "OPEN" or state.updated_ms + value["idle_ms"] > value["occurred_at"]:
            return Result(state=_remember(state, event_id))  # touched since the scanner saw it idle
        state.status, state.items, state.expires_ms = "EXPIRED", {}, None
        state.remember(event_id)
        return Result(state=state)
    if state is None or state.status != "OPEN":
        # A closed cart (checked out or expired) starts afresh with the user's next change.
        state = CartState(cart_id=value["cart_id"], user_id=value["user_id"],
                          processed=state.processed if state else [])
    if record == ADD:
        state.items[value["sku"]] = state.items.get(value["sku"], 0) + value["quantity"]
    elif record == REMOVE:
        left = 0 if value.get("quantity") is None else state.items.get(value["sku"], 0) - value["quantity"]
        if left > 0:
            state.items[value["sku"]] = left
        else:
            state.items.pop(value["sku"], None)
    elif record == CLEAR:
        state.items = {}
    elif record == CHECKOUT:
        state.status, state.items, state.checked_out_order = "CHECKED_OUT", {}, value["order_id"]
    else:
        raise Unexpected(f"the carts agent has no rule for {record}")
    # The command's own time, never the worker's clock: the edge reads its writes by comparing the
    # cart's updated_ms with the time of the command it sent, so a queued command must not look applied.
    state.updated_ms = max(state.updated_ms, value["occurred_at"])
    state.expires_ms = state.updated_ms + idle_ms if state.status == "OPEN" and state.items else None
    state.remember(event_id)
    return Result(state=state)


def _remember(state: CartState | None, event_id: str) -> CartState | None:
    if state is not None:
        state.remember(event_id)
    return state


def due_expiries(carts: Iterable[tuple[str, dict]], now_ms: int, idle_ms: int) -> list[Output]:
    """CartExpired for every open cart idle past its expiry (the expiry scanner); same ids on a rescan."""
    return [
        Output(CART_EVENTS, EXPIRED, {
            "event_id": derived_event_id(cart_id, "expired", stored["updated_ms"]), "cart_id": cart_id,
            "user_id": stored["user_id"], "idle_ms": idle_ms, "occurred_at": now_ms,
        })
        for cart_id, stored in carts
        if stored.get("status") == "OPEN" and stored.get("expires_ms") is not None and stored["expires_ms"] <= now_ms
    ]
