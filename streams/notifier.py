"""The sender's rule for one notification: claim it, ask the preferences, render, send, and say what came of it.

``Sender.process`` takes one ``NotificationRequested`` and returns a ``Verdict``, which the sender's loop
(``streams.notifier_loop``) acts on: ``Told`` (a final outcome: its ``NotificationSent`` is produced),
``Again`` (to the retry topic with a not-before time: a channel failing for now, quiet hours, another
sender holding the claim) or ``Refused`` (a final failure: its NotificationSent and the request to
``notifications.dlq`` with the reason). Outcomes:

- delivered: the channel accepted it (its provider message id is kept);
- skipped: the user turned the channel off, or has no address for it (no email, no push subscription,
  no phone number): recorded, nothing sent; a skip is never retried;
- gone: the address no longer exists (a push subscription answered 404/410 and was removed);
- failed: the template does not render, the provider refused it, or every retry failed (dead letter).

Every outcome is first written to the ledger (``shopflow.notify.ledger``), so a request seen again is
answered from it and its channel is never called twice for one notification_id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shopflow.notify import preferences
from shopflow.notify.channels import (
    Channel,
    PermanentFailure,
    Recipient,
    RecipientGone,
    RenderedMessage,
    TransientFailure,
)
from shopflow.notify.ledger import Busy, Ledger, Settled
from shopflow.schemas.notifications import Channel as ChannelName
from shopflow.schemas.notifications import NotificationOutcome, NotificationRequested, NotificationSent
from shopflow.streams.runtime import derived_event_id

# How long a claim holds: longer than any channel's timeout, so a live sender's claim never lapses.
CLAIM_LEASE_S = 120.0
STATUS_OF = {NotificationOutcome.DELIVERED: "delivered", NotificationOutcome.FAILED: "failed",
             NotificationOutcome.SKIPPED: "skipped", NotificationOutcome.GONE: "gone"}
OUTCOME_OF = {status: outcome for outcome, status in STATUS_OF.items()}


class Directory(Protocol):
    """What the sender reads about users and messages: preferences, addresses, templates."""

    async def preferences(self, user_id: str) -> preferences.Preferences: ...
    async def recipient(self, user_id: str) -> Recipient: ...
    async def render(self, request: NotificationRequested) -> RenderedMessage: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6
    first_s: float = 2.0
    max_s: float = 300.0

    def delay(self, attempts_made: int) -> timedelta:
        return timedelta(seconds=min(self.first_s * 2 ** max(attempts_made - 1, 0), self.max_s))


@dataclass(frozen=True, slots=True)
class Told:
    sent: NotificationSent


@dataclass(frozen=True, slots=True)
class Again:
    not_before: datetime
    why: str


@dataclass(frozen=True, slots=True)
class Refused:
    sent: NotificationSent
    reason: str  # the dlq.reason: template-error, permanent-failure, retries-exhausted


Verdict = Told | Again | Refused


def outcome_record(request: NotificationRequested, outcome: NotificationOutcome, attempts: int,
                   detail: str | None, at: datetime) -> NotificationSent:
    """The NotificationSent of a notification; the same event id however often it is told."""
    return NotificationSent(
        event_id=derived_event_id(request.notification_id, "sent"), notification_id=request.notification_id,
        user_id=request.user_id, channel=request.channel, delivered=outcome == NotificationOutcome.DELIVERED,
        detail=detail, outcome=outcome.value, attempts=attempts, template=request.template, occurred_at=at)


def no_address(channel: ChannelName, recipient: Recipient) -> str | None:
    """Why ``recipient`` cannot be reached through ``channel``, or None."""
    if channel == ChannelName.EMAIL and not recipient.email:
        return "no email address on the account"
    if channel == ChannelName.SMS and not recipient.phone:
        return "no phone number on the account"
    if channel == ChannelName.PUSH and not recipient.push_subscriptions:
        return "no push subscription registered"
    return None


class Sender:
    def __init__(self, channels: Mapping[str, Channel], ledger: Ledger, directory: Directory,
                 retry: RetryPolicy = RetryPolicy(), now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.channels = channels
        self.ledger = ledger
        self.directory = directory
        self.retry = retry
        self.now = now

    async def process(self, request: NotificationRequested) -> Verdict:
        claim = await self.ledger.claim(request, CLAIM_LEASE_S)
        if isinstance(claim, Settled):  # told before: tell it again (a crash may have lost the record)
            outcome = OUTCOME_OF[claim.status]
            return Told(outcome_record(request, outcome, claim.attempts, claim.detail, self.now()))
        if isinstance(claim, Busy):
            return Again(claim.until, "another sender holds it")
        attempts = claim.attempts
        decision = preferences.decide(await self.directory.preferences(request.user_id), request.channel,
                                      request.template, self.now())
        if isinstance(decision, preferences.Skip):
            return await self._final(request, NotificationOutcome.SKIPPED, attempts, f"skipped: {decision.why}")
        if isinstance(decision, preferences.Defer):
            await self.ledger.settle(request.notification_id, "waiting", attempts, "quiet hours")
            return Again(decision.until, "quiet hours")
        channel = self.channels.get(request.channel.value)
        if channel is None:
            return await self._final(request, NotificationOutcome.SKIPPED, attempts,
                                     f"skipped: the {request.channel.value} channel is not configured")
        recipient = await self.directory.recipient(request.user_id)
        missing = no_address(request.channel, recipient)
        if missing is not None:
            return await self._final(request, NotificationOutcome.SKIPPED, attempts, f"skipped: {missing}")
        try:
            message = await self.directory.render(request)
        except Exception as exc:  # TemplateError, or any bug rendering: no retry can mend it
            return await self._refuse(request, attempts, "template-error", f"{type(exc).__name__}: {exc}")
        attempts += 1
        try:
            provider_id = await channel.send(message, recipient)
        except TransientFailure as exc:
            if attempts >= self.retry.attempts:
                return await self._refuse(request, attempts, "retries-exhausted",
                                          f"{attempts} attempts failed; the last: {exc.reason}")
            await self.ledger.settle(request.notification_id, "waiting", attempts, exc.reason)
            return Again(self.now() + self.retry.delay(attempts), exc.reason)
        except RecipientGone as exc:
            return await self._final(request, NotificationOutcome.GONE, attempts, exc.reason)
        except PermanentFailure as exc:
            return await self._refuse(request, attempts, "permanent-failure", exc.reason)
        return await self._final(request, NotificationOutcome.DELIVERED, attempts, provider_id, message.subject)

    async def _final(self, request: NotificationRequested, outcome: NotificationOutcome, attempts: int,
                     detail: str | None, subject: str | None = None) -> Told:
        await self.ledger.settle(request.notification_id, STATUS_OF[outcome], attempts, detail, subject)
        return Told(outcome_record(request, outcome, attempts, detail, self.now()))

    async def _refuse(self, request: NotificationRequested, attempts: int, reason: str, detail: str) -> Refused:
        told = await self._final(request, NotificationOutcome.FAILED, attempts, detail)
        return Refused(told.sent, reason)
