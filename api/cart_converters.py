"""Explicit conversions for carts and the wishlist: HTTP types to cart commands, worker views to HTTP.

Field by field, as ``api.converters``: the cart id is the user's id (one cart per user), and
timestamps are whole milliseconds (what Avro's timestamp-millis keeps), so the time a command
carries is exactly the time the edge compares the worker's ``updated_ms`` with.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shopflow.api.cart_schemas import CartLinePublic, CartPublic, CartStatus, CheckoutRequest, WishlistItem
from shopflow.api.converters import address_to_record
from shopflow.api.schemas import Money
from shopflow.catalog.reader import Price
from shopflow.schemas import carts as cart_records
from shopflow.schemas.records import datetime_of_ms

# Every record the edge produces to cart-commands (registered up front by the lifespan).
CART_RECORDS = (
    cart_records.AddCartItem, cart_records.RemoveCartItem, cart_records.ClearCart, cart_records.CheckoutCart,
)


def now_ms_time() -> datetime:
    """Now, truncated to the millisecond (the wire's precision)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def cart_id_of(user_id: str) -> str:
    return user_id


def _event_id(event_id: str | None) -> str:
    return event_id or str(uuid.uuid4())


def to_add_cart_item(*, user_id: str, sku: str, quantity: int, occurred_at: datetime,
                     event_id: str | None = None) -> cart_records.AddCartItem:
    return cart_records.AddCartItem(event_id=_event_id(event_id), cart_id=cart_id_of(user_id), user_id=user_id,
                               sku=sku, quantity=quantity, occurred_at=occurred_at)


def to_remove_cart_item(*, user_id: str, sku: str, quantity: int | None, occurred_at: datetime,
                        event_id: str | None = None) -> cart_records.RemoveCartItem:
    return cart_records.RemoveCartItem(event_id=_event_id(event_id), cart_id=cart_id_of(user_id), user_id=user_id,
                                  sku=sku, quantity=quantity, occurred_at=occurred_at)


def to_clear_cart(*, user_id: str, occurred_at: datetime, event_id: str | None = None) -> cart_records.ClearCart:
    return cart_records.ClearCart(event_id=_event_id(event_id), cart_id=cart_id_of(user_id), user_id=user_id,
                             occurred_at=occurred_at)


def to_checkout_cart(*, user_id: str, order_id: str, body: CheckoutRequest, occurred_at: datetime,
                     event_id: str | None = None) -> cart_records.CheckoutCart:
    return cart_records.CheckoutCart(
        event_id=_event_id(event_id), cart_id=cart_id_of(user_id), user_id=user_id, order_id=order_id,
        payment_token=body.payment_token,
        shipping_address=address_to_record(body.shipping_address) if body.shipping_address else None,
        occurred_at=occurred_at,
    )


def cart_items(view: Mapping[str, Any] | None) -> dict[str, int]:
    """The ``{sku: quantity}`` of a worker's cart view (empty for a cart never used)."""
    if view is None:
        return {}
    return {str(sku): int(q) for sku, q in (view.get("items") or {}).items() if int(q) > 0}


def cart_public(*, user_id: str, view: Mapping[str, Any] | None, prices: Mapping[str, Price],
                up_to_date: bool) -> CartPublic:
    """The worker's view (``None``: never used) with today's catalog prices of the skus that sell."""
    items = cart_items(view)
    lines = [CartLinePublic(sku=sku, quantity=q,
                            unit_price=Money(amount_minor=prices[sku].price_minor, currency=prices[sku].currency)
                            if sku in prices else None)
             for sku, q in sorted(items.items())]
    priced = [(line.quantity, line.unit_price) for line in lines if line.unit_price is not None]
    currencies = {price.currency for _, price in priced}
    subtotal = None
    if lines and len(priced) == len(lines) and len(currencies) == 1:
        subtotal = Money(amount_minor=sum(q * price.amount_minor for q, price in priced), currency=currencies.pop())
    updated_ms = int(view.get("updated_ms") or 0) if view is not None else 0
    return CartPublic(
        cart_id=cart_id_of(user_id), user_id=user_id,
        status=CartStatus(view.get("status", "OPEN")) if view is not None else CartStatus.OPEN,
        items=lines, subtotal=subtotal,
        updated_at=datetime_of_ms(updated_ms) if updated_ms else None,
        checked_out_order=view.get("checked_out_order") if view is not None else None,
        up_to_date=up_to_date,
    )


def wishlist_item(row: Mapping[str, Any]) -> WishlistItem:
    """A ``wishlist_items`` row left-joined with ``products`` (name, price_minor, currency, active, deleted_at)."""
    known = row["name"] is not None and row["deleted_at"] is None
    return WishlistItem(
        sku=row["sku"], name=row["name"] if known else None,
        price=Money(amount_minor=row["price_minor"], currency=row["currency"]) if known else None,
        available=bool(known and row["active"]), added_at=row["added_at"],
    )
