"""The files context's records: product image uploads, what the image agent made of them, deletions.

One frozen dataclass per .avsc of this folder, field for field (see shopflow.schemas.records).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from shopflow.schemas.records import AvroRecord, UuidStr


class ImageOutcome(StrEnum):
    """What became of an upload: stored with its thumbnails, or refused with nothing kept."""

    READY = "READY"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class FileUploaded(AvroRecord):
    """Event: an admin's upload reached the store and was confirmed."""

    AVRO_NAME: ClassVar[str] = "shopflow.files.FileUploaded"
    event_id: UuidStr
    sku: str
    upload_id: str
    key: str
    content_type: str
    size_bytes: int
    uploaded_by: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageProcessed(AvroRecord):
    """Event: the image agent stored an upload as an image with thumbnails, or refused it."""

    AVRO_NAME: ClassVar[str] = "shopflow.files.ImageProcessed"
    event_id: UuidStr
    sku: str
    image_id: str
    outcome: ImageOutcome
    reason: str | None = None
    detail: str | None = None
    format: str | None = None
    width: int = 0
    height: int = 0
    thumbnail_sizes: tuple[int, ...] = ()
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class FileDeleted(AvroRecord):
    """Event: an admin deleted a product image; its objects are removed by the image agent."""

    AVRO_NAME: ClassVar[str] = "shopflow.files.FileDeleted"
    event_id: UuidStr
    sku: str
    image_id: str
    deleted_by: str
    occurred_at: datetime
