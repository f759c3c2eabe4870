"""The payments context's records: charges and refunds asked of the payments agent and their outcomes.

One frozen dataclass per .avsc of this folder, field for field (see shopflow.schemas.records).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from shopflow.schemas.records import AvroRecord, Money, UuidStr


class PaymentFailureReason(StrEnum):
    """Why a charge failed (shopflow.payments.PaymentFailureReason)."""

    DECLINED = "DECLINED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    TIMEOUT = "TIMEOUT"
    GATEWAY_ERROR = "GATEWAY_ERROR"


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
