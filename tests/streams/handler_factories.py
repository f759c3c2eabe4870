"""Factories for the handlers' Given/When/Then tables (tests/streams/test_*_handler.py): typed records and
stored states with thin defaults, as Quix Streams' tests build theirs, so a case names only what it is about.

Defaults follow the replay scenarios' happy path: order ``o-1`` of user ``u-1``, two lines (2 x SKU-A at
10.00 EUR, 1 x SKU-B at 25.00 EUR, 45.00 EUR in all), paid with ``tok_approve``.

A record's event id derives from what it says (its kind, entity and a copy number), so building the same
record twice gives the same record, as a redelivery does; ``copy=2`` makes a second, distinct one (a retry
the sender sent again under a new id). Test folders are not packages: the tables ``import handler_factories``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from shopflow.schemas.carts import AddCartItem, CartExpired, CheckoutCart, ClearCart, RemoveCartItem
from shopflow.schemas.catalog import ProductUpserted
from shopflow.schemas.inventory import (
    CommitStock,
    RejectReason,
    ReleaseStock,
    ReserveStock,
    StockAdjusted,
    StockRejected,
    StockReleased,
    StockReserved,
)
from shopflow.schemas.orders import CancelOrder, PlaceOrder, StepTimedOut
from shopflow.schemas.payments import (
    PaymentFailed,
    PaymentFailureReason,
    PaymentRefunded,
    PaymentRequested,
    PaymentSucceeded,
    RefundRequested,
)
from shopflow.schemas.records import Money, OrderLine, datetime_of_ms
from shopflow.streams.orders import OrderRecord, handle_order
from shopflow.streams.payments import PaymentCommand, SimulatedGateway, handle_payment
from shopflow.streams.runtime import Result
from shopflow.tables.values import CartState, OrderState, PaymentState, Reservation, StockState, decode, encode

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the time every Given starts at
ORDER = "o-1"
USER = "u-1"
SKU = "SKU-A"
TOTAL = Money(4500, "EUR")  # the default order's total
PAYMENT_ID = "pay-1"

_NAMESPACE = uuid.UUID("0c1d5e7a-6b0e-4c52-9d3f-7a2b8e4f1c90")


def event_id(*parts: object) -> str:
    """A stable event id for a test record, from what identifies it."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(map(str, parts))))


def at(ms: int = T0) -> datetime:
    return datetime_of_ms(ms)


Stored = TypeVar("Stored", OrderState, StockState, PaymentState, CartState)


def as_stored(state: Stored) -> Stored:
    """The state as a worker reads it back from its table: through the table's JSON, a fresh copy."""
    raw = decode(encode(state.to_dict()))
    assert raw is not None
    return type(state).from_dict(raw)


def emitted(result: Result) -> list[str]:
    """What a result emits, as the replay scenarios list it: ``"<record type> <key>"``."""
    return [f"{o.short} {o.key}" for o in result.outputs]


def emitted_ids(result: Result) -> list[str]:
    return [o.event_id for o in result.outputs]


# -- orders -----------------------------------------------------------------------------------------------


def line(sku: str = SKU, quantity: int = 1, price: int = 1000, currency: str = "EUR") -> OrderLine:
    return OrderLine(sku, quantity, Money(price, currency))


DEFAULT_LINES = (line("SKU-A", 2, 1000), line("SKU-B", 1, 2500))


def many_lines(n: int) -> tuple[OrderLine, ...]:
    """``n`` lines of distinct skus, one unit each."""
    return tuple(line(f"SKU-{i:03d}") for i in range(n))


def place_order(*lines: OrderLine, order_id: str = ORDER, token: str = "tok_approve", currency: str = "EUR",
                copy: int = 1) -> PlaceOrder:
    """A PlaceOrder of the given lines (none given: the default two; an order of no lines is a ``replace``)."""
    return PlaceOrder(event_id=event_id("PlaceOrder", order_id, copy), order_id=order_id, user_id=USER,
                      lines=lines or DEFAULT_LINES, payment_token=token, currency=currency, occurred_at=at())


def cancel_order(order_id: str = ORDER, copy: int = 1) -> CancelOrder:
    return CancelOrder(event_id("CancelOrder", order_id, copy), order_id, USER, at())


def stock_reserved(sku: str, quantity: int = 1, order_id: str = ORDER, copy: int = 1) -> StockReserved:
    return StockReserved(event_id("StockReserved", order_id, sku, copy), order_id, sku, quantity, 10, at())


def stock_rejected(sku: str, quantity: int = 1, order_id: str = ORDER, copy: int = 1) -> StockRejected:
    return StockRejected(event_id("StockRejected", order_id, sku, copy), order_id, sku, quantity,
                         RejectReason.OUT_OF_STOCK, 0, at())


def stock_released(sku: str, quantity: int = 1, order_id: str = ORDER, copy: int = 1) -> StockReleased:
    return StockReleased(event_id("StockReleased", order_id, sku, copy), order_id, sku, quantity, at())


def payment_succeeded(order_id: str = ORDER, payment_id: str = PAYMENT_ID, copy: int = 1) -> PaymentSucceeded:
    return PaymentSucceeded(event_id("PaymentSucceeded", order_id, copy), order_id, payment_id, TOTAL, at())


def payment_failed(order_id: str = ORDER, copy: int = 1) -> PaymentFailed:
    return PaymentFailed(event_id=event_id("PaymentFailed", order_id, copy), order_id=order_id,
                         reason=PaymentFailureReason.DECLINED, occurred_at=at())


def payment_refunded(order_id: str = ORDER, copy: int = 1) -> PaymentRefunded:
    return PaymentRefunded(event_id("PaymentRefunded", order_id, copy), order_id, PAYMENT_ID, "ref-1", TOTAL, at())


def step_timed_out(step: str, state: str, deadline_ms: int, order_id: str = ORDER) -> StepTimedOut:
    return StepTimedOut(event_id("StepTimedOut", order_id, step, deadline_ms), order_id, step, state,
                        at(deadline_ms), at(deadline_ms))


def order_after(*history: OrderRecord, timeouts: Mapping[str, float] | None = None) -> OrderState:
    """The stored state of an order that has met ``history``, one record a millisecond from T0."""
    state: OrderState | None = None
    for i, record in enumerate(history):
        state = handle_order(state, record, T0 + i, timeouts or {}).state or state
    assert state is not None, "a Given history starts with a PlaceOrder"
    return state


# The Given histories of the default order, by the state they leave it in.
PLACED = (place_order(),)
RESERVED = (*PLACED, stock_reserved("SKU-A", 2), stock_reserved("SKU-B", 1))
CONFIRMED = (*RESERVED, payment_succeeded())
CANCELLED_WHILE_PENDING = (*PLACED, cancel_order())
CANCELLED_WHILE_RESERVED = (*RESERVED, cancel_order())
REFUNDED = (*CONFIRMED, cancel_order())
INVALID = (place_order(token=""),)


# -- inventory --------------------------------------------------------------------------------------------


def reserve(quantity: int = 1, order_id: str = ORDER, sku: str = SKU, copy: int = 1) -> ReserveStock:
    return ReserveStock(event_id("ReserveStock", order_id, sku, copy), order_id, sku, quantity, at())


def commit(quantity: int = 1, order_id: str = ORDER, sku: str = SKU, copy: int = 1) -> CommitStock:
    return CommitStock(event_id("CommitStock", order_id, sku, copy), order_id, sku, quantity, at())


def release(quantity: int = 1, order_id: str = ORDER, sku: str = SKU, consumed: bool = False,
            copy: int = 1) -> ReleaseStock:
    return ReleaseStock(event_id=event_id("ReleaseStock", order_id, sku, copy), order_id=order_id, sku=sku,
                        quantity=quantity, consumed=consumed, occurred_at=at())


def adjust(delta: int, sku: str = SKU, copy: int = 1) -> StockAdjusted:
    return StockAdjusted(event_id=event_id("StockAdjusted", sku, delta, copy), sku=sku, delta=delta,
                         reason="recount", occurred_at=at())


def product_listed(version: int = 1, sku: str = "SKU-NEW") -> ProductUpserted:
    return ProductUpserted(event_id=event_id("ProductUpserted", sku, version), sku=sku, version=version,
                           name="New thing", description="", price=Money(1500, "EUR"), active=True, occurred_at=at())


def stock(on_hand: int, held: Mapping[str, int] | None = None, sku: str = SKU) -> StockState:
    """A sku's stored stock; ``held`` gives the units each open order holds (reserved is their sum)."""
    open_ = dict(held or {})
    return StockState(sku=sku, on_hand=on_hand, reserved=sum(open_.values()), open=open_)


def settled(status: str, quantity: int = 1, order_id: str = ORDER, sku: str = SKU, available: int = 0) -> Reservation:
    """The settled row of an order line: REJECTED, COMMITTED or RELEASED (quantity 0: released unheld)."""
    return Reservation(sku=sku, order_id=order_id, quantity=quantity, status=status, available=available,
                       settled_ms=T0 - 1)


# -- payments ---------------------------------------------------------------------------------------------


def charge(token: str = "tok_approve", order_id: str = ORDER, copy: int = 1) -> PaymentRequested:
    return PaymentRequested(event_id("PaymentRequested", order_id, copy), order_id, USER, TOTAL, token, at())


def refund(payment_id: str = PAYMENT_ID, order_id: str = ORDER, copy: int = 1) -> RefundRequested:
    return RefundRequested(event_id("RefundRequested", order_id, copy), order_id, payment_id, TOTAL, at())


class CountingGateway(SimulatedGateway):
    """The simulated provider, counting the refunds it made (it counts its captures itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.refunds = 0

    async def refund(self, payment_id: str, amount: Money) -> str:
        self.refunds += 1
        return await super().refund(payment_id, amount)


async def payment_after(*history: PaymentCommand, gateway: SimulatedGateway) -> PaymentState | None:
    """The stored charge of an order that has met ``history`` (None for an empty one)."""
    state: PaymentState | None = None
    for i, command in enumerate(history):
        state = (await handle_payment(state, command, gateway, T0 + i)).state or state
    return state


# -- carts ------------------------------------------------------------------------------------------------

CART = "c-1"
IDLE_MS = 60_000


def add_item(sku: str = SKU, quantity: int = 1, at_ms: int = T0, copy: int = 1) -> AddCartItem:
    return AddCartItem(event_id("AddCartItem", CART, sku, quantity, at_ms, copy), CART, USER, sku, quantity, at(at_ms))


def remove_item(sku: str = SKU, quantity: int | None = None, at_ms: int = T0, copy: int = 1) -> RemoveCartItem:
    return RemoveCartItem(event_id=event_id("RemoveCartItem", CART, sku, quantity, at_ms, copy), cart_id=CART,
                          user_id=USER, sku=sku, quantity=quantity, occurred_at=at(at_ms))


def clear_cart(at_ms: int = T0) -> ClearCart:
    return ClearCart(event_id("ClearCart", CART, at_ms), CART, USER, at(at_ms))


def checkout(order_id: str = "o-20", at_ms: int = T0) -> CheckoutCart:
    return CheckoutCart(event_id=event_id("CheckoutCart", CART, order_id), cart_id=CART, user_id=USER,
                        order_id=order_id, payment_token="tok_approve", occurred_at=at(at_ms))


def cart_expired(at_ms: int, idle_ms: int = IDLE_MS) -> CartExpired:
    return CartExpired(event_id("CartExpired", CART, at_ms), CART, USER, idle_ms, at(at_ms))


def cart(items: Mapping[str, int] | None = None, status: str = "OPEN", updated_ms: int = T0) -> CartState:
    """A stored cart, its expiry as the agent arms it (an open cart with items expires once idle)."""
    items_ = dict(items or {})
    return CartState(cart_id=CART, user_id=USER, items=items_, status=status, updated_ms=updated_ms,
                     expires_ms=updated_ms + IDLE_MS if items_ and status == "OPEN" else None)
