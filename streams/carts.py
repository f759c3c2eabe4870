"""The carts agent's logic: each cart's items, idle expiry and checkout.

One cart per user (the cart id is the user id). Commands come from the edge on cart-commands;
CartExpired comes from the worker's expiry scanner on cart-events, and is applied only if the cart
has not changed since the scanner saw it idle. Checkout is priced and placed by the edge (it owns
prices); CheckoutCart then closes the cart with the order it became.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shopflow.schemas.carts import AddCartItem, CartExpired, CheckoutCart, ClearCart, RemoveCartItem
from shopflow.schemas.records import datetime_of_ms, ms_of
from shopflow.streams.runtime import Output, Result, Unexpected, derived_event_id
from shopflow.tables.values import CartState

# Everything that reaches the carts agent: the edge's commands and the expiry scanner's CartExpired.
CartRecord = AddCartItem | RemoveCartItem | ClearCart | CheckoutCart | CartExpired


def handle_cart(state: CartState | None, record: CartRecord, now_ms: int, idle_ms: int) -> Result:
    event_id = record.event_id
    if state is not None and state.seen(event_id):
        return Result(duplicate=True)
    occurred_ms = ms_of(record.occurred_at)
    if isinstance(record, CartExpired):
        if state is None or state.status != "OPEN" or state.updated_ms + record.idle_ms > occurred_ms:
            return Result(state=_remember(state, event_id))  # touched since the scanner saw it idle
        state.status, state.items, state.expires_ms = "EXPIRED", {}, None
        state.remember(event_id)
        return Result(state=state)
    if state is None or state.status != "OPEN":
        # A closed cart (checked out or expired) starts afresh with the user's next change.
        state = CartState(cart_id=record.cart_id, user_id=record.user_id,
                          processed=state.processed if state else [])
    if isinstance(record, AddCartItem):
        state.items[record.sku] = state.items.get(record.sku, 0) + record.quantity
    elif isinstance(record, RemoveCartItem):
        left = 0 if record.quantity is None else state.items.get(record.sku, 0) - record.quantity
        if left > 0:
            state.items[record.sku] = left
        else:
            state.items.pop(record.sku, None)
    elif isinstance(record, ClearCart):
        state.items = {}
    elif isinstance(record, CheckoutCart):
        state.status, state.items, state.checked_out_order = "CHECKED_OUT", {}, record.order_id
    else:
        raise Unexpected(f"the carts agent has no rule for {type(record).__name__}")
    # The command's own time, never the worker's clock: the edge reads its writes by comparing the
    # cart's updated_ms with the time of the command it sent, so a queued command must not look applied.
    state.updated_ms = max(state.updated_ms, occurred_ms)
    state.expires_ms = state.updated_ms + idle_ms if state.status == "OPEN" and state.items else None
    state.remember(event_id)
    return Result(state=state)


def _remember(state: CartState | None, event_id: str) -> CartState | None:
    if state is not None:
        state.remember(event_id)
    return state


def due_expiries(carts: Iterable[tuple[str, dict[str, Any]]], now_ms: int, idle_ms: int) -> list[Output]:
    """CartExpired for every open cart idle past its expiry (the expiry scanner); same ids on a rescan."""
    at = datetime_of_ms(now_ms)
    return [
        Output(CartExpired(derived_event_id(cart_id, "expired", stored["updated_ms"]), cart_id, stored["user_id"],
                           idle_ms, at))
        for cart_id, stored in carts
        if stored.get("status") == "OPEN" and stored.get("expires_ms") is not None and stored["expires_ms"] <= now_ms
    ]
