"""The delivery ledger (``notification_deliveries``, migration 0010): one row per notification_id, which
is also the user's notification history, and where a user can be reached.

A sender claims a notification before calling its channel; a claim succeeds for a new notification,
for one waiting to be tried again, or for one whose claim is older than the lease (its sender died
mid-send). Anything else is answered from the row: final (sent, failed, skipped, gone: nothing is sent
again) or busy (another sender holds it now). That is what makes a request delivered twice by Kafka
send once, and a crash between the send and the commit send at most once more (an SMTP server cannot
take part in a transaction; the lease bounds the window).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg

from shopflow.notify.channels import PushSubscription, Recipient
from shopflow.schemas.notifications import NotificationRequested

FINAL = frozenset({"delivered", "failed", "skipped", "gone"})


@dataclass(frozen=True, slots=True)
class Claimed:
    attempts: int  # the channel calls made before this claim


@dataclass(frozen=True, slots=True)
class Settled:
    """Final already: what it came to (the sender tells it again, with the same event id)."""

    status: str
    attempts: int
    detail: str | None


@dataclass(frozen=True, slots=True)
class Busy:
    until: datetime  # when the other sender's claim lapses


Claim = Claimed | Settled | Busy


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    notification_id: str
    channel: str
    template: str
    order_id: str | None
    status: str
    attempts: int
    subject: str | None
    detail: str | None
    requested_at: datetime
    updated_at: datetime


class Ledger(Protocol):
    async def claim(self, request: NotificationRequested, lease_s: float) -> Claim: ...
    async def settle(self, notification_id: str, status: str, attempts: int, detail: str | None,
                     subject: str | None = None) -> None: ...


class PgLedger:
    """The ledger in PostgreSQL; every statement one round trip on a pooled connection."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def claim(self, request: NotificationRequested, lease_s: float) -> Claim:
        async with self.pool.acquire() as conn:
            attempts = await conn.fetchval(
                """INSERT INTO notification_deliveries AS d
                       (notification_id, user_id, channel, template, order_id, status, claimed_at, requested_at)
                   VALUES ($1, $2, $3, $4, $5, 'sending', now(), $6)
                   ON CONFLICT (notification_id) DO UPDATE
                       SET status = 'sending', claimed_at = now(), updated_at = now()
                   WHERE d.status = 'waiting'
                      OR (d.status = 'sending' AND d.claimed_at < now() - make_interval(secs => $7))
                   RETURNING attempts""",
                request.notification_id, request.user_id, request.channel.value, request.template,
                request.order_id, request.occurred_at, lease_s)
            if attempts is not None:
                return Claimed(attempts)
            row = await conn.fetchrow(
                "SELECT status, attempts, detail, claimed_at + make_interval(secs => $2) AS lapses "
                "FROM notification_deliveries WHERE notification_id = $1", request.notification_id, lease_s)
        if row["status"] in FINAL:
            return Settled(row["status"], row["attempts"], row["detail"])
        return Busy(row["lapses"])

    async def settle(self, notification_id: str, status: str, attempts: int, detail: str | None,
                     subject: str | None = None) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE notification_deliveries SET status = $2, attempts = $3, detail = $4, "
                "subject = coalesce($5, subject), updated_at = now() WHERE notification_id = $1",
                notification_id, status, attempts, detail, subject)


async def history(conn: asyncpg.Connection, user_id: str, *, limit: int,
                  before: datetime | None = None) -> list[HistoryEntry]:
    """A user's notifications, newest first (``before``: the requested_at of the last one already shown)."""
    rows = await conn.fetch(
        "SELECT notification_id, channel, template, order_id, status, attempts, subject, detail, requested_at, "
        "updated_at FROM notification_deliveries WHERE user_id = $1 AND ($2::timestamptz IS NULL OR requested_at < $2) "
        "ORDER BY requested_at DESC, notification_id LIMIT $3", user_id, before, limit)
    return [HistoryEntry(**dict(r)) for r in rows]


async def recipient_of(conn: asyncpg.Connection, user_id: str) -> Recipient:
    """Where ``user_id`` can be reached: the account's email, its push subscriptions (no phone numbers are
    kept on accounts yet, so SMS finds no address)."""
    try:
        uuid.UUID(user_id)
    except ValueError:  # not an account of the edge (a request from a tool): nowhere to reach them
        return Recipient(user_id=user_id)
    email = await conn.fetchval("SELECT email FROM users WHERE id = $1::uuid", user_id)
    subscriptions = await conn.fetch(
        "SELECT subscription_id::text, endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = $1::uuid "
        "ORDER BY created_at", user_id)
    return Recipient(user_id=user_id, email=email, phone=None,
                     push_subscriptions=[PushSubscription(r["endpoint"], r["p256dh"], r["auth"], r["subscription_id"])
                                         for r in subscriptions])
