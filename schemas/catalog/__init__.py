"""The catalog context's records: product changes leaving PostgreSQL through the outbox.

One frozen dataclass per .avsc of this folder, field for field (see shopflow.schemas.records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from shopflow.schemas.records import AvroRecord, Money, UuidStr


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
    images: tuple[str, ...] = ()
    occurred_at: datetime
