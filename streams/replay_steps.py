"""The scenario shorthand of the replay files as typed records: what a ``place``, ``cancel``, ``list``,
``adjust`` or ``cart`` step sends, in-process (streams/replay.py) and on the broker (streams/replay_broker.py).
"""

from __future__ import annotations

from typing import Any

from shopflow.schemas.carts import AddCartItem, CheckoutCart, ClearCart, RemoveCartItem
from shopflow.schemas.catalog import ProductUpserted
from shopflow.schemas.inventory import StockAdjusted
from shopflow.schemas.orders import CancelOrder, PlaceOrder
from shopflow.schemas.records import Money, OrderLine, datetime_of_ms
from shopflow.streams.runtime import Output, derived_event_id


def place_order(spec: dict[str, Any], now_ms: int) -> Output:
    """A PlaceOrder from the scenario shorthand: {order_id, user_id, token, currency, lines: [[sku, qty, price]]}."""
    currency = spec.get("currency", "EUR")
    return Output(PlaceOrder(
        event_id=spec.get("event_id") or derived_event_id("scenario", "place", spec["order_id"]),
        order_id=spec["order_id"], user_id=spec.get("user_id", "u-1"),
        lines=tuple(OrderLine(sku, qty, Money(price, currency)) for sku, qty, price in spec["lines"]),
        shipping_address=None, payment_token=spec.get("token", "tok_approve"), currency=currency,
        occurred_at=datetime_of_ms(now_ms),
    ))


def cancel_order(spec: dict[str, Any], now_ms: int) -> Output:
    return Output(CancelOrder(
        spec.get("event_id") or derived_event_id("scenario", "cancel", spec["order_id"], now_ms),
        spec["order_id"], spec.get("by", "u-1"), datetime_of_ms(now_ms),
    ))


def list_product(spec: dict[str, Any], now_ms: int) -> Output:
    """A ProductUpserted as the catalog outbox would publish it: {sku, version, name?, price?}."""
    return Output(ProductUpserted(
        event_id=spec.get("event_id") or derived_event_id("scenario", "list", spec["sku"], spec["version"]),
        sku=spec["sku"], version=spec["version"], name=spec.get("name", spec["sku"]), description="",
        price=Money(spec.get("price", 1000), spec.get("currency", "EUR")), active=True,
        occurred_at=datetime_of_ms(now_ms),
    ))


def adjust_stock(spec: dict[str, Any], now_ms: int) -> Output:
    """A StockAdjusted from the shorthand {sku, delta, reason?}."""
    return Output(StockAdjusted(
        event_id=derived_event_id("scenario", "adjust", spec["sku"], now_ms), sku=spec["sku"], delta=spec["delta"],
        reason=spec.get("reason", "scenario"), adjusted_by=None, occurred_at=datetime_of_ms(now_ms),
    ))


_CART_RECORDS: dict[str, type[AddCartItem | RemoveCartItem | ClearCart | CheckoutCart]] = {
    "add": AddCartItem, "remove": RemoveCartItem, "clear": ClearCart, "checkout": CheckoutCart,
}


def cart_command(spec: dict[str, Any], now_ms: int) -> Output:
    """A cart command from the shorthand {op: add|remove|clear|checkout, cart_id, sku?, quantity?, order_id?}."""
    record = _CART_RECORDS[spec["op"]]
    fields: dict[str, Any] = {
        "event_id": spec.get("event_id") or derived_event_id("scenario", "cart", spec["cart_id"], record.__name__,
                                                             now_ms, spec.get("sku")),
        "cart_id": spec["cart_id"], "user_id": spec.get("user_id", spec["cart_id"]),
        "occurred_at": datetime_of_ms(now_ms),
    }
    if record in (AddCartItem, RemoveCartItem):
        fields.update(sku=spec["sku"], quantity=spec.get("quantity"))
    if record is CheckoutCart:
        fields.update(order_id=spec["order_id"], payment_token=spec.get("token", "tok_approve"), shipping_address=None)
    return Output(record(**fields))
