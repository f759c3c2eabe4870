"""A user's notification preferences and the one rule that reads them: send now, skip, or wait.

Per user: each channel on or off, and quiet hours (a start and an end local hour in the user's time
zone; the span may wrap midnight: 22 -> 7). ``decide`` is the only place the rule lives:

- a channel the user turned off is never used, critical or not: an explicit opt-out is obeyed (the
  message is skipped and recorded, so the user's history shows why nothing came);
- quiet hours hold back non-critical messages until the quiet span ends (``Defer``); critical ones
  (orders, refunds, account security) go at once: a customer is told that their order was taken or
  cancelled when it happens, whatever the hour.

Stored in PostgreSQL (``notification_preferences``, migration 0010); a user with no row has every
channel on and no quiet hours.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from shopflow.schemas.notifications import Channel

# Templates whose messages bypass quiet hours: a user must hear about their money and their account.
CRITICAL_TEMPLATES = frozenset({
    "order_confirmed", "order_cancelled", "order_refunded", "password_reset", "security_alert", "low_stock",
})


def is_critical(template: str) -> bool:
    return template in CRITICAL_TEMPLATES or template.startswith("security_")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours [start, end) during which non-critical messages wait; start > end wraps midnight."""

    start_hour: int
    end_hour: int
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        for name, hour in (("start_hour", self.start_hour), ("end_hour", self.end_hour)):
            if not 0 <= hour <= 23:
                raise ValueError(f"quiet hours: {name} must be an hour from 0 to 23, not {hour}")
        if self.start_hour == self.end_hour:
            raise ValueError("quiet hours: start and end are the same hour; give a span, or no quiet hours")
        zone_of(self.time_zone)

    def ends_after(self, now: datetime) -> datetime | None:
        """When the quiet span that ``now`` falls in ends (UTC); None when ``now`` is not quiet."""
        local = now.astimezone(zone_of(self.time_zone))
        hour = local.hour
        quiet = (self.start_hour <= hour < self.end_hour) if self.start_hour < self.end_hour \
            else (hour >= self.start_hour or hour < self.end_hour)
        if not quiet:
            return None
        end = datetime.combine(local.date(), time(self.end_hour), tzinfo=local.tzinfo)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), time(self.end_hour), tzinfo=local.tzinfo)
        return end.astimezone(now.tzinfo)


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; give an IANA name such as Europe/Paris") from None


@dataclass(frozen=True, slots=True)
class Preferences:
    """What one user chose; the defaults are what a user who chose nothing gets."""

    channels_off: frozenset[Channel] = field(default_factory=frozenset)
    quiet_hours: QuietHours | None = None

    def enabled(self, channel: Channel) -> bool:
        return channel not in self.channels_off


@dataclass(frozen=True, slots=True)
class Send:
    pass


@dataclass(frozen=True, slots=True)
class Skip:
    why: str  # "channel-off"


@dataclass(frozen=True, slots=True)
class Defer:
    until: datetime  # UTC, when the quiet span ends


Decision = Send | Skip | Defer


def decide(prefs: Preferences, channel: Channel, template: str, now: datetime) -> Decision:
    """Whether a message of ``template`` goes through ``channel`` now (see the module's doc)."""
    if not prefs.enabled(channel):
        return Skip("channel-off")
    if prefs.quiet_hours is not None and not is_critical(template):
        until = prefs.quiet_hours.ends_after(now)
        if until is not None:
            return Defer(until)
    return Send()


async def load(conn: asyncpg.Connection, user_id: str) -> Preferences:
    try:
        uuid.UUID(user_id)
    except ValueError:  # not an account of the edge: nobody chose anything
        return Preferences()
    row = await conn.fetchrow(
        "SELECT channels_off, quiet_start, quiet_end, time_zone FROM notification_preferences WHERE user_id = $1",
        user_id)
    if row is None:
        return Preferences()
    quiet = None
    if row["quiet_start"] is not None and row["quiet_end"] is not None:
        quiet = QuietHours(row["quiet_start"], row["quiet_end"], row["time_zone"])
    return Preferences(frozenset(Channel(c) for c in row["channels_off"]), quiet)


async def save(conn: asyncpg.Connection, user_id: str, prefs: Preferences) -> None:
    quiet = prefs.quiet_hours
    await conn.execute(
        """INSERT INTO notification_preferences (user_id, channels_off, quiet_start, quiet_end, time_zone)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (user_id) DO UPDATE SET channels_off = $2, quiet_start = $3, quiet_end = $4,
               time_zone = $5, updated_at = now()""",
        user_id, sorted(c.value for c in prefs.channels_off),
        quiet.start_hour if quiet else None, quiet.end_hour if quiet else None,
        quiet.time_zone if quiet else "UTC")
