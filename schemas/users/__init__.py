"""The users context's records: account events, published through the outbox.

One frozen dataclass per .avsc of this folder, field for field (see shopflow.schemas.records).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from shopflow.schemas.records import AvroRecord, UuidStr


class Role(StrEnum):
    """What a user may do (shopflow.users.Role); readers fall back to CUSTOMER for unknown symbols."""

    CUSTOMER = "CUSTOMER"
    ADMIN = "ADMIN"


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

