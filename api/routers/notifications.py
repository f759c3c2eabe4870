"""The signed-in user's notifications (``/v1/users/me``): their preferences and their history.

Preferences (``notification-preferences``): each channel on or off, and quiet hours (local start and
end hour in an IANA time zone) that hold back non-critical messages; order and security messages are
critical and go through quiet hours, but never through a channel the user turned off
(``shopflow.notify.preferences``). History (``notifications``): what the sender did with each
notification, newest first, from the delivery ledger.

Admins (``admin_router``): a sku's own low-stock threshold, sent to the inventory agent that owns the
sku as a StockAdjusted of zero units carrying it, so the agent that decides a crossing holds it in the
sku's own state (replayed with it, never a lookup on the hot path).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from shopflow.api.dependencies import AdminUser, CurrentUser, DbDep, EdgeDep
from shopflow.api.errors import errors
from shopflow.api.routers.admin import require_known_sku
from shopflow.catalog.products import SKU_PATTERN
from shopflow.notify import preferences
from shopflow.notify.ledger import history
from shopflow.schemas.inventory import StockAdjusted
from shopflow.schemas.notifications import Channel

router = APIRouter(prefix="/v1/users/me", tags=["notifications"])
admin_router = APIRouter(prefix="/v1/admin/stock", tags=["admin"])


class QuietHoursBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_hour: int = Field(ge=0, le=23, description="Local hour quiet starts (22: from 22:00).")
    end_hour: int = Field(ge=0, le=23, description="Local hour quiet ends (7: until 07:00); may wrap midnight.")
    time_zone: str = Field("UTC", max_length=64, description="IANA time zone, e.g. Europe/Paris.")


class NotificationPreferences(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channels: dict[Channel, StrictBool] = Field(
        description="Each channel on (true) or off (false); a channel left out is on.")
    quiet_hours: QuietHoursBody | None = Field(None, description="Hours non-critical messages wait out; null: none.")


class NotificationEntry(BaseModel):
    notification_id: str
    channel: Channel
    template: str
    order_id: str | None
    status: str = Field(description="delivered, failed, skipped, gone (final); sending or waiting (not yet).")
    attempts: int
    subject: str | None
    detail: str | None = Field(description="Why it was skipped or failed; the provider's message id when sent.")
    requested_at: datetime
    updated_at: datetime


class NotificationHistory(BaseModel):
    items: list[NotificationEntry]
    next_before: datetime | None = Field(description="Pass as `before` for the next page; null on the last.")


def _public(prefs: preferences.Preferences) -> NotificationPreferences:
    quiet = prefs.quiet_hours
    return NotificationPreferences(
        channels={c: prefs.enabled(c) for c in Channel},
        quiet_hours=QuietHoursBody(start_hour=quiet.start_hour, end_hour=quiet.end_hour, time_zone=quiet.time_zone)
        if quiet else None)


@router.get("/notification-preferences", response_model=NotificationPreferences, responses=errors(401, 429, 503))
async def my_preferences(user: CurrentUser, conn: DbDep) -> NotificationPreferences:
    """My channels and quiet hours (every channel on and no quiet hours until I choose)."""
    return _public(await preferences.load(conn, user.user_id))


@router.put("/notification-preferences", response_model=NotificationPreferences,
            responses=errors(400, 401, 413, 422, 429, 503))
async def set_preferences(body: NotificationPreferences, user: CurrentUser, conn: DbDep) -> NotificationPreferences:
    """Replace my channels and quiet hours."""
    try:
        quiet = preferences.QuietHours(body.quiet_hours.start_hour, body.quiet_hours.end_hour,
                                       body.quiet_hours.time_zone) if body.quiet_hours else None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    prefs = preferences.Preferences(frozenset(c for c, on in body.channels.items() if not on), quiet)
    await preferences.save(conn, user.user_id, prefs)
    return _public(prefs)


@router.get("/notifications", response_model=NotificationHistory, responses=errors(401, 422, 429, 503))
async def my_notifications(
    user: CurrentUser, conn: DbDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[str | None, Query(max_length=40, pattern=r"^\d{4}-\d{2}-\d{2}T",
                                        description="next_before of the previous page (an ISO-8601 time).")] = None,
) -> NotificationHistory:
    """What I was sent (or why not), newest first."""
    try:  # the pattern keeps numbers out (pydantic would take 0.5 as seconds since the epoch)
        after = None if before is None else datetime.fromisoformat(before)
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"before {before!r} is not a time: pass next_before as it was given") from None
    entries = await history(conn, user.user_id, limit=limit, before=after)
    items = [NotificationEntry(**asdict(e)) for e in entries]
    return NotificationHistory(items=items, next_before=entries[-1].requested_at if len(entries) == limit else None)


class LowStockThreshold(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: int = Field(ge=0, le=1_000_000, description="Available units at or below which the sku is low.")


class LowStockThresholdAccepted(BaseModel):
    event_id: str
    sku: str
    threshold: int


@admin_router.put("/{sku}/low-stock-threshold", status_code=status.HTTP_202_ACCEPTED,
                  response_model=LowStockThresholdAccepted, responses=errors(400, 401, 403, 413, 422, 429, 503))
async def set_low_stock_threshold(
    sku: Annotated[str, Path(pattern=SKU_PATTERN, description="The sku.")], body: LowStockThreshold,
    admin: AdminUser, edge: EdgeDep,
) -> LowStockThresholdAccepted:
    """Set a sku's own low-stock threshold (the shop's default is settings low_stock_threshold); admins are
    told (LowStock) when its available units fall to it. Setting it again is harmless."""
    await require_known_sku(edge, sku)
    event = StockAdjusted(event_id=str(uuid.uuid4()), sku=sku, delta=0,
                          reason=f"low-stock threshold set to {body.threshold}", adjusted_by=admin.user_id,
                          low_stock_threshold=body.threshold, occurred_at=datetime.now(UTC))
    await edge.producer.send(edge.topics.stock_requests, sku, event)
    return LowStockThresholdAccepted(event_id=event.event_id, sku=sku, threshold=body.threshold)
