"""The inventory context's records: stock requests to the inventory agent and its answers.

One frozen dataclass per .avsc of this folder, field for field (see shopflow.schemas.records).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from shopflow.schemas.records import AvroRecord, UuidStr


class RejectReason(StrEnum):
    """Why stock could not be reserved (shopflow.inventory.RejectReason)."""

    OUT_OF_STOCK = "OUT_OF_STOCK"
    UNKNOWN_SKU = "UNKNOWN_SKU"


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
class LowStock(AvroRecord):
    """Event: a sku's available units fell to or below its low-stock threshold (once per crossing)."""

    AVRO_NAME: ClassVar[str] = "shopflow.inventory.LowStock"
    event_id: UuidStr
    sku: str
    available: int
    threshold: int
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
    low_stock_threshold: int | None = None
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
