"""The sender's rule for one notification, with a fake channel and an in-memory ledger: seen once, retried,
dead-lettered, skipped by preference; every path ends in a recorded outcome."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from shopflow.notify.channels import (
    PermanentFailure,
    PushSubscription,
    Recipient,
    RecipientGone,
    RenderedMessage,
    TransientFailure,
)
from shopflow.notify.ledger import FINAL, Busy, Claimed, Settled
from shopflow.notify.preferences import Preferences, QuietHours
from shopflow.notify.templates import TemplateError
from shopflow.schemas.notifications import Channel, NotificationRequested
from shopflow.streams.notifier import Again, Refused, RetryPolicy, Sender, Told

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class FakeChannel:
    """Records what it was asked to send; fails as told (one exception per call, then succeeds)."""

    def __init__(self, name: Channel, failures: list[Exception] | None = None):
        self.name = name
        self.failures = list(failures or [])
        self.sent: list[tuple[RenderedMessage, Recipient]] = []

    async def send(self, message: RenderedMessage, recipient: Recipient) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((message, recipient))
        return f"provider-{len(self.sent)}"


@dataclass
class MemoryLedger:
    rows: dict[str, dict] = field(default_factory=dict)

    async def claim(self, request: NotificationRequested, lease_s: float) -> Claimed | Settled | Busy:
        row = self.rows.setdefault(request.notification_id, {"status": "new", "attempts": 0, "detail": None})
        if row["status"] in FINAL:
            return Settled(row["status"], row["attempts"], row["detail"])
        if row["status"] == "sending":
            return Busy(NOW + timedelta(seconds=lease_s))
        row["status"] = "sending"
        return Claimed(row["attempts"])

    async def settle(self, notification_id: str, status: str, attempts: int, detail: str | None,
                     subject: str | None = None) -> None:
        self.rows[notification_id].update(status=status, attempts=attempts, detail=detail, subject=subject)


@dataclass
class FakeDirectory:
    prefs: Preferences = field(default_factory=Preferences)
    recipient_: Recipient = field(default_factory=lambda: Recipient(
        "u1", email="ada@example.com", push_subscriptions=[PushSubscription("https://push.local/1", "k", "a")]))
    broken_template: bool = False

    async def preferences(self, user_id: str) -> Preferences:
        return self.prefs

    async def recipient(self, user_id: str) -> Recipient:
        return self.recipient_

    async def render(self, request: NotificationRequested) -> RenderedMessage:
        if self.broken_template:
            raise TemplateError("text: 'totl' is undefined")
        return RenderedMessage(f"Order {request.params['order_id']}", "text", "<p>html</p>")


def request(channel: Channel = Channel.EMAIL, template: str = "order_confirmed") -> NotificationRequested:
    nid = str(uuid.uuid4())
    return NotificationRequested(event_id=nid, notification_id=nid, user_id="u1", channel=channel, template=template,
                                 params={"order_id": "ord-1", "total": "59.90 EUR"}, occurred_at=NOW)


@pytest.fixture
def make_sender():
    def make(*failures: Exception, directory: FakeDirectory | None = None, attempts: int = 3):
        channel = FakeChannel(Channel.EMAIL, list(failures))
        ledger = MemoryLedger()
        sender = Sender({"EMAIL": channel, "PUSH": FakeChannel(Channel.PUSH)}, ledger, directory or FakeDirectory(),
                        RetryPolicy(attempts=attempts, first_s=2, max_s=60), now=lambda: NOW)
        return sender, channel, ledger
    return make


async def test_a_request_is_sent_once_and_its_outcome_told(make_sender):
    sender, channel, ledger = make_sender()
    req = request()
    verdict = await sender.process(req)
    assert isinstance(verdict, Told) and verdict.sent.delivered and verdict.sent.outcome == "DELIVERED"
    assert verdict.sent.detail == "provider-1" and verdict.sent.attempts == 1
    assert channel.sent[0][1].email == "ada@example.com"
    assert ledger.rows[req.notification_id]["subject"] == "Order ord-1"


async def test_a_request_seen_again_sends_nothing_and_tells_the_same_outcome(make_sender):
    sender, channel, _ = make_sender()
    req = request()
    first = await sender.process(req)
    again = await sender.process(req)
    assert len(channel.sent) == 1
    assert isinstance(again, Told) and again.sent.event_id == first.sent.event_id and again.sent.delivered


async def test_a_request_another_sender_holds_waits_for_its_claim_to_lapse(make_sender):
    sender, channel, ledger = make_sender()
    req = request()
    ledger.rows[req.notification_id] = {"status": "sending", "attempts": 0, "detail": None}
    verdict = await sender.process(req)
    assert isinstance(verdict, Again) and verdict.not_before > NOW and channel.sent == []


async def test_a_failure_for_now_is_retried_with_backoff_then_delivered(make_sender):
    sender, channel, ledger = make_sender(TransientFailure("connection refused"), TransientFailure("timeout"))
    req = request()
    first = await sender.process(req)
    assert isinstance(first, Again) and first.not_before == NOW + timedelta(seconds=2)
    assert ledger.rows[req.notification_id]["status"] == "waiting"
    second = await sender.process(req)
    assert isinstance(second, Again) and second.not_before == NOW + timedelta(seconds=4)
    third = await sender.process(req)
    assert isinstance(third, Told) and third.sent.delivered and third.sent.attempts == 3
    assert len(channel.sent) == 1


async def test_retries_exhausted_go_to_the_dead_letter_topic(make_sender):
    sender, channel, ledger = make_sender(*[TransientFailure("connection refused")] * 3, attempts=3)
    req = request()
    verdicts = [await sender.process(req) for _ in range(3)]
    assert [type(v) for v in verdicts] == [Again, Again, Refused]
    assert verdicts[-1].reason == "retries-exhausted" and not verdicts[-1].sent.delivered
    assert "3 attempts failed; the last: connection refused" in verdicts[-1].sent.detail
    assert ledger.rows[req.notification_id]["status"] == "failed"
    assert isinstance(await sender.process(req), Told) and channel.sent == []  # final: never tried again


async def test_a_permanent_failure_is_dead_lettered_at_once(make_sender):
    sender, _, _ = make_sender(PermanentFailure("550 no such mailbox"))
    verdict = await sender.process(request())
    assert isinstance(verdict, Refused) and verdict.reason == "permanent-failure"
    assert verdict.sent.outcome == "FAILED" and verdict.sent.detail == "550 no such mailbox"


async def test_a_template_that_does_not_render_is_dead_lettered_without_calling_the_channel(make_sender):
    sender, channel, _ = make_sender(directory=FakeDirectory(broken_template=True))
    verdict = await sender.process(request())
    assert isinstance(verdict, Refused) and verdict.reason == "template-error" and "totl" in verdict.sent.detail
    assert channel.sent == []


async def test_a_gone_push_subscription_is_recorded_not_retried(make_sender):
    sender, _, _ = make_sender()
    sender.channels["PUSH"].failures.append(RecipientGone("410 Gone: subscription removed"))
    verdict = await sender.process(request(Channel.PUSH))
    assert isinstance(verdict, Told) and verdict.sent.outcome == "GONE" and not verdict.sent.delivered


async def test_a_channel_turned_off_is_skipped_and_recorded(make_sender):
    sender, channel, ledger = make_sender(directory=FakeDirectory(Preferences(frozenset({Channel.EMAIL}))))
    req = request()
    verdict = await sender.process(req)
    assert isinstance(verdict, Told) and verdict.sent.outcome == "SKIPPED"
    assert verdict.sent.detail == "skipped: channel-off"
    assert channel.sent == [] and ledger.rows[req.notification_id]["status"] == "skipped"


@pytest.mark.parametrize(("channel", "why"), [
    (Channel.SMS, "skipped: the SMS channel is not configured"),
    (Channel.EMAIL, "skipped: no email address on the account"),
])
async def test_nowhere_to_send_is_skipped_and_recorded(make_sender, channel, why):
    sender, _, _ = make_sender(directory=FakeDirectory(recipient_=Recipient("u1")))
    verdict = await sender.process(request(channel))
    assert isinstance(verdict, Told) and verdict.sent.detail == why


async def test_quiet_hours_hold_a_welcome_until_they_end(make_sender):
    quiet = Preferences(quiet_hours=QuietHours(11, 14))
    sender, channel, ledger = make_sender(directory=FakeDirectory(quiet))
    req = request(template="welcome")
    verdict = await sender.process(req)
    assert verdict == Again(NOW.replace(hour=14), "quiet hours") and channel.sent == []
    assert ledger.rows[req.notification_id]["attempts"] == 0  # waiting is not a failed attempt
    assert isinstance(await sender.process(request()), Told)  # order_confirmed is critical: sent now


class FakeRecord:
    def __init__(self, offset: int, partition: int = 0, topic: str = "n"):
        self._offset, self._partition, self._topic = offset, partition, topic

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def test_offsets_are_committed_up_to_the_first_record_not_done():
    from shopflow.streams.notifier_loop import OffsetBook

    book, records = OffsetBook(), [FakeRecord(o) for o in range(4)]
    for r in records:
        book.take(r)
    book.done(records[1])  # a fast channel finished a later record first
    book.done(records[3])
    assert [(p.topic, p.partition, p.offset) for p in book.due()] == [("n", 0, 0)]  # 0 still in flight
    book.done(records[0])
    assert [p.offset for p in book.due()] == [2]  # 2 is waiting (a retry's not-before, a slow channel)
    assert book.due() == []  # nothing new to commit
    book.done(records[2])
    assert [p.offset for p in book.due()] == [4]
