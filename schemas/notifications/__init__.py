"""The notifications context's records: notifications asked for and their outcomes.

One frozen dataclass per .avsc of this folder, field for field (see shopflow.schemas.records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from shopflow.schemas.records import AvroRecord, UuidStr


class Channel(StrEnum):
    """How a notification is delivered (shopflow.notifications.Channel)."""

    EMAIL = "EMAIL"
    SMS = "SMS"
    PUSH = "PUSH"


class NotificationOutcome(StrEnum):
    """What became of a notification (NotificationSent.outcome; a string on the wire, so new outcomes
    need no schema change)."""

    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    GONE = "GONE"


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
    locale: str = "en"
    cause_event_id: str | None = None
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
    outcome: str | None = None  # a NotificationOutcome's value
    attempts: int = 0
    template: str | None = None
    occurred_at: datetime
