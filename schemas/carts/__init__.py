"""The carts context's records: the edge's cart commands and the carts agent's CartExpired.

One frozen dataclass per .avsc of this folder, field for field (see shopflow.schemas.records).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from shopflow.schemas.records import Address, AvroRecord, UuidStr


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
