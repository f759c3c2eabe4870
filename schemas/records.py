"""Typed Python records for the Avro contracts: one frozen dataclass per .avsc, with converters to and from fastavro dicts.

Each class mirrors its schema field for field, in the same order, so ``tests/schemas/test_records_contract.py``
can hold the two together. The wire codec keeps working on plain dicts: ``record.to_avro()`` gives the
dict to encode and ``Record.from_avro(decoded)`` takes what fastavro decodes (uuid as ``uuid.UUID``,
timestamp-millis as an aware UTC ``datetime``, enums as ``str``).

A schema may put a defaulted field before a required one (``occurred_at`` always comes last), which a
positional dataclass cannot express; those classes are ``kw_only`` so the field order still matches.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum, StrEnum
from types import NoneType, UnionType
from typing import Annotated, Any, ClassVar, Self, Union, get_args, get_origin, get_type_hints

UUID_LOGICAL = "avro:uuid"
# The canonical string form of a uuid; the marker tells from_avro to accept the uuid.UUID fastavro decodes.
UuidStr = Annotated[str, UUID_LOGICAL]

_Convert = Callable[[Any], Any]
_Plan = tuple[tuple[str, _Convert | None], ...]
_PLANS: dict[type, tuple[_Plan, _Plan]] = {}
_PLAIN = (str, int, bool, float, bytes, datetime)


class AvroRecord:
    """Base of every record: generic converters driven by a per-class plan built on first use."""

    __slots__ = ()
    AVRO_NAME: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """A plain dict for fastavro: nested records as dicts, enums as str, tuples as lists."""
        out: dict[str, Any] = {}
        for name, enc in _plans(type(self))[0]:
            value = getattr(self, name)
            out[name] = value if enc is None else enc(value)
        return out

    @classmethod
    def from_avro(cls, d: Mapping[str, Any]) -> Self:
        """The record from a fastavro-decoded dict; a missing key falls back to the field's default."""
        kwargs: dict[str, Any] = {}
        for name, dec in _plans(cls)[1]:
            if name in d:
                value = d[name]
                kwargs[name] = value if dec is None else dec(value)
        return cls(**kwargs)


def _plans(cls: type[AvroRecord]) -> tuple[_Plan, _Plan]:
    plans = _PLANS.get(cls)
    if plans is None:
        hints = get_type_hints(cls, include_extras=True)
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        plans = _PLANS[cls] = (
            tuple((n, _encoder(hints[n])) for n in names),
            tuple((n, _decoder(hints[n])) for n in names),
        )
    return plans


def _optional_arg(hint: Any) -> Any | None:
    """``T`` for a hint ``T | None``, else None."""
    if get_origin(hint) not in (Union, UnionType):
        return None
    args = get_args(hint)
    rest = [a for a in args if a is not NoneType]
    if len(args) != 2 or len(rest) != 1:
        raise TypeError(f"only T | None unions map to Avro here, not {hint!r}")
    return rest[0]


def _nullable(conv: _Convert | None) -> _Convert | None:
    if conv is None:
        return None
    return lambda v: None if v is None else conv(v)


def _encoder(hint: Any) -> _Convert | None:
    origin = get_origin(hint)
    if origin is Annotated:
        return _encoder(get_args(hint)[0])
    if (inner := _optional_arg(hint)) is not None:
        return _nullable(_encoder(inner))
    if origin is tuple:
        item = _encoder(get_args(hint)[0])
        return list if item is None else (lambda v: [item(x) for x in v])
    if origin is dict:
        return dict
    if isinstance(hint, type):
        if issubclass(hint, AvroRecord):
            return AvroRecord.to_avro
        if issubclass(hint, Enum):
            return lambda v: v.value
        if issubclass(hint, _PLAIN):
            return None
    raise TypeError(f"no Avro conversion for {hint!r}")


def _uuid_str(v: Any) -> Any:
    return str(v) if isinstance(v, uuid.UUID) else v


def _decoder(hint: Any) -> _Convert | None:
    origin = get_origin(hint)
    if origin is Annotated:
        base, *meta = get_args(hint)
        return _uuid_str if UUID_LOGICAL in meta else _decoder(base)
    if (inner := _optional_arg(hint)) is not None:
        return _nullable(_decoder(inner))
    if origin is tuple:
        item = _decoder(get_args(hint)[0])
        return tuple if item is None else (lambda v: tuple([item(x) for x in v]))
    if origin is dict:
        return dict
    if isinstance(hint, type):
        if issubclass(hint, AvroRecord):
            return hint.from_avro
        if issubclass(hint, Enum):
            return hint
        if issubclass(hint, _PLAIN):
            return None
    raise TypeError(f"no Avro conversion for {hint!r}")


# -- shared nested types (shopflow.common) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Money(AvroRecord):
    """An integer count of minor units of an ISO 4217 currency (1999 EUR is 19.99 EUR); never a float."""

    AVRO_NAME: ClassVar[str] = "shopflow.common.Money"
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class OrderLine(AvroRecord):
    """One line of an order: units of a sku at the unit price when the order was placed."""

    AVRO_NAME: ClassVar[str] = "shopflow.common.OrderLine"
    sku: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class Address(AvroRecord):
    """A postal delivery address."""

    AVRO_NAME: ClassVar[str] = "shopflow.common.Address"
    name: str
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    country: str


# -- enums ---------------------------------------------------------------------------------------


class CancelReason(StrEnum):
    """Why an order was cancelled (shopflow.orders.CancelReason)."""

    OUT_OF_STOCK = "OUT_OF_STOCK"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    TIMEOUT = "TIMEOUT"
    BY_CUSTOMER = "BY_CUSTOMER"
    INVALID = "INVALID"


class RejectReason(StrEnum):
    """Why stock could not be reserved (shopflow.inventory.RejectReason)."""

    OUT_OF_STOCK = "OUT_OF_STOCK"
    UNKNOWN_SKU = "UNKNOWN_SKU"


class PaymentFailureReason(StrEnum):
    """Why a charge failed (shopflow.payments.PaymentFailureReason)."""

    DECLINED = "DECLINED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    TIMEOUT = "TIMEOUT"
    GATEWAY_ERROR = "GATEWAY_ERROR"


class Role(StrEnum):
    """What a user may do (shopflow.users.Role); readers fall back to CUSTOMER for unknown symbols."""

    CUSTOMER = "CUSTOMER"
    ADMIN = "ADMIN"


class Channel(StrEnum):
    """How a notification is delivered (shopflow.notifications.Channel)."""

    EMAIL = "EMAIL"
    SMS = "SMS"
    PUSH = "PUSH"


# -- shopflow.carts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddCartItem(AvroRecord):
    """Command: add units of a sku to a cart."""

    AVRO_NAME: ClassVar[str] = "shopflow.carts.AddCartItem"
    event_id: UuidStr
    cart_id: str
    user_id: str
    sku: str
    quantity: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class CartExpired(AvroRecord):
    """Event: a cart was discarded after staying idle past its time-to-live."""

    AVRO_NAME: ClassVar[str] = "shopflow.carts.CartExpired"
    event_id: UuidStr
    cart_id: str
    user_id: str
    idle_ms: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutCart(AvroRecord):
    """Command: turn a cart into an order."""

    AVRO_NAME: ClassVar[str] = "shopflow.carts.CheckoutCart"
    event_id: UuidStr
    cart_id: str
    user_id: str
    order_id: str
    payment_token: str
    shipping_address: Address | None = None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ClearCart(AvroRecord):
    """Command: empty a cart."""

    AVRO_NAME: ClassVar[str] = "shopflow.carts.ClearCart"
    event_id: UuidStr
    cart_id: str
    user_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveCartItem(AvroRecord):
    """Command: remove units of a sku from a cart; quantity None removes the whole line."""

    AVRO_NAME: ClassVar[str] = "shopflow.carts.RemoveCartItem"
    event_id: UuidStr
    cart_id: str
    user_id: str
    sku: str
    quantity: int | None = None
    occurred_at: datetime


# -- shopflow.catalog ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductDeleted(AvroRecord):
    """Event: a product was removed from the catalog."""

    AVRO_NAME: ClassVar[str] = "shopflow.catalog.ProductDeleted"
    event_id: UuidStr
    sku: str
    version: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductUpserted(AvroRecord):
    """Event: a product was created or changed; carries the whole product as it now is."""

    AVRO_NAME: ClassVar[str] = "shopflow.catalog.ProductUpserted"
    event_id: UuidStr
    sku: str
    version: int
    name: str
    description: str
    brand: str | None = None
    category: str | None = None
    price: Money
    attributes: dict[str, str] = field(default_factory=dict)
    active: bool
    occurred_at: datetime


# -- shopflow.inventory --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseStock(AvroRecord):
    """Command: give back a reservation made for order_id."""

    AVRO_NAME: ClassVar[str] = "shopflow.inventory.ReleaseStock"
    event_id: UuidStr
    order_id: str
    sku: str
    quantity: int
    consumed: bool = False
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class CommitStock(AvroRecord):
    """Command: the order was confirmed, so its reservation of this sku is consumed."""

    AVRO_NAME: ClassVar[str] = "shopflow.inventory.CommitStock"
    event_id: UuidStr
    order_id: str
    sku: str
    quantity: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ReserveStock(AvroRecord):
    """Command: reserve stock of one sku for one order line."""

    AVRO_NAME: ClassVar[str] = "shopflow.inventory.ReserveStock"
    event_id: UuidStr
    order_id: str
    sku: str
    quantity: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StockAdjusted(AvroRecord):
    """Event: a manual correction of a sku's on-hand stock (goods received, shrinkage, recount)."""

    AVRO_NAME: ClassVar[str] = "shopflow.inventory.StockAdjusted"
    event_id: UuidStr
    sku: str
    delta: int
    reason: str
    adjusted_by: str | None = None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class StockRejected(AvroRecord):
    """Event: stock of sku could not be reserved for order_id; nothing was reserved."""

    AVRO_NAME: ClassVar[str] = "shopflow.inventory.StockRejected"
    event_id: UuidStr
    order_id: str
    sku: str
    quantity: int
    reason: RejectReason
    available: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class StockReleased(AvroRecord):
    """Event: the reservation of quantity units of sku for order_id is released."""

    AVRO_NAME: ClassVar[str] = "shopflow.inventory.StockReleased"
    event_id: UuidStr
    order_id: str
    sku: str
    quantity: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class StockReserved(AvroRecord):
    """Event: quantity units of sku are now reserved for order_id."""

    AVRO_NAME: ClassVar[str] = "shopflow.inventory.StockReserved"
    event_id: UuidStr
    order_id: str
    sku: str
    quantity: int
    remaining_on_hand: int
    occurred_at: datetime


# -- shopflow.notifications ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationRequested(AvroRecord):
    """Command: send a message to a user."""

    AVRO_NAME: ClassVar[str] = "shopflow.notifications.NotificationRequested"
    event_id: UuidStr
    notification_id: str
    user_id: str
    channel: Channel
    template: str
    params: dict[str, str] = field(default_factory=dict)
    order_id: str | None = None
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationSent(AvroRecord):
    """Event: the outcome of sending a notification."""

    AVRO_NAME: ClassVar[str] = "shopflow.notifications.NotificationSent"
    event_id: UuidStr
    notification_id: str
    user_id: str
    channel: Channel
    delivered: bool
    detail: str | None = None
    occurred_at: datetime


# -- shopflow.orders -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CancelOrder(AvroRecord):
    """Command: someone asks to cancel an order."""

    AVRO_NAME: ClassVar[str] = "shopflow.orders.CancelOrder"
    event_id: UuidStr
    order_id: str
    requested_by: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class StepTimedOut(AvroRecord):
    """Command: a saga step's deadline passed while the order was still in that state."""

    AVRO_NAME: ClassVar[str] = "shopflow.orders.StepTimedOut"
    event_id: UuidStr
    order_id: str
    step: str
    state: str
    deadline: datetime
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCancelled(AvroRecord):
    """Event: terminal state CANCELLED, or REFUNDED when refunded is true."""

    AVRO_NAME: ClassVar[str] = "shopflow.orders.OrderCancelled"
    event_id: UuidStr
    order_id: str
    user_id: str
    reason: CancelReason
    detail: str | None = None
    refunded: bool = False
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class OrderConfirmed(AvroRecord):
    """Event: terminal state CONFIRMED."""

    AVRO_NAME: ClassVar[str] = "shopflow.orders.OrderConfirmed"
    event_id: UuidStr
    order_id: str
    user_id: str
    total: Money
    payment_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class OrderPlaced(AvroRecord):
    """Event: the orders agent accepted a PlaceOrder and recorded the order as PENDING."""

    AVRO_NAME: ClassVar[str] = "shopflow.orders.OrderPlaced"
    event_id: UuidStr
    order_id: str
    user_id: str
    lines: tuple[OrderLine, ...]
    total: Money
    payment_token: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrder(AvroRecord):
    """Command: a customer asks to place an order."""

    AVRO_NAME: ClassVar[str] = "shopflow.orders.PlaceOrder"
    event_id: UuidStr
    order_id: str
    user_id: str
    lines: tuple[OrderLine, ...]
    shipping_address: Address | None = None
    payment_token: str
    currency: str
    occurred_at: datetime


# -- shopflow.payments ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentFailed(AvroRecord):
    """Event: the charge for an order failed and nothing was captured."""

    AVRO_NAME: ClassVar[str] = "shopflow.payments.PaymentFailed"
    event_id: UuidStr
    order_id: str
    reason: PaymentFailureReason
    detail: str | None = None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentRefunded(AvroRecord):
    """Event: the gateway refunded a charge."""

    AVRO_NAME: ClassVar[str] = "shopflow.payments.PaymentRefunded"
    event_id: UuidStr
    order_id: str
    payment_id: str
    refund_id: str
    amount: Money
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentRequested(AvroRecord):
    """Command: charge the customer for an order whose lines are all reserved."""

    AVRO_NAME: ClassVar[str] = "shopflow.payments.PaymentRequested"
    event_id: UuidStr
    order_id: str
    user_id: str
    amount: Money
    payment_token: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentSucceeded(AvroRecord):
    """Event: the gateway captured the charge for an order."""

    AVRO_NAME: ClassVar[str] = "shopflow.payments.PaymentSucceeded"
    event_id: UuidStr
    order_id: str
    payment_id: str
    amount: Money
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class RefundRequested(AvroRecord):
    """Command: refund a captured charge."""

    AVRO_NAME: ClassVar[str] = "shopflow.payments.RefundRequested"
    event_id: UuidStr
    order_id: str
    payment_id: str
    amount: Money
    occurred_at: datetime


# -- shopflow.users ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRegistered(AvroRecord):
    """Event: a new user account was created."""

    AVRO_NAME: ClassVar[str] = "shopflow.users.UserRegistered"
    event_id: UuidStr
    user_id: str
    email: str
    display_name: str | None = None
    role: Role
    occurred_at: datetime


RECORDS: dict[str, type[AvroRecord]] = {
    cls.AVRO_NAME: cls
    for cls in (
        AddCartItem, CartExpired, CheckoutCart, ClearCart, RemoveCartItem,
        ProductDeleted, ProductUpserted,
        CommitStock, ReleaseStock, ReserveStock, StockAdjusted, StockRejected, StockReleased, StockReserved,
        NotificationRequested, NotificationSent,
        CancelOrder, OrderCancelled, OrderConfirmed, OrderPlaced, PlaceOrder, StepTimedOut,
        PaymentFailed, PaymentRefunded, PaymentRequested, PaymentSucceeded, RefundRequested,
        UserRegistered,
    )
}


def record_type(fullname: str) -> type[AvroRecord]:
    """The record class for a schema's full name, e.g. ``shopflow.orders.OrderPlaced``."""
    try:
        return RECORDS[fullname]
    except KeyError:
        raise KeyError(f"no record class for {fullname}") from None
