"""The orders context's records: commands to the orders agent and the events of an order's life.

One frozen dataclass per .avsc of this folder, field for field (see shopflow.schemas.records).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from shopflow.schemas.records import Address, AvroRecord, Money, OrderLine, UuidStr


class CancelReason(StrEnum):
    """Why an order was cancelled (shopflow.orders.CancelReason)."""

    OUT_OF_STOCK = "OUT_OF_STOCK"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    TIMEOUT = "TIMEOUT"
    BY_CUSTOMER = "BY_CUSTOMER"
    INVALID = "INVALID"


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
