"""The sender on the real stack: requests on a throwaway topic, emails through the stack's mailpit, read back
through its HTTP API. Sent once however often a request comes; opted out, nothing; SMTP down, retried."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from notifications_pipeline import add_user, start_sender
from polling import eventually

from shopflow.deploy.mail_server import Mailbox
from shopflow.notify import preferences
from shopflow.schemas.notifications import Channel, NotificationRequested
from shopflow.settings import Settings
from shopflow.streams.notifier import Again, RetryPolicy, Told
from shopflow.topologies.catalog import NOTIFICATIONS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(stack: Settings, pg_schema_factory) -> Settings:
    from shopflow.db import migrate_database

    schema = pg_schema_factory("notifytest")
    asyncio.run(migrate_database(stack, schema=schema))
    return stack.model_copy(update={"postgres_schema": schema})


@pytest.fixture
def topics(topic_factory) -> tuple[str, str]:
    return topic_factory("notifications", partitions=3), topic_factory("notifications-retry", partitions=3)


@pytest.fixture
def send_request(producer, codec, settings):
    def send(topic: str, user_id: str, *, order_id: str | None = None, channel: Channel = Channel.EMAIL,
             notification_id: str | None = None) -> NotificationRequested:
        nid = notification_id or str(uuid.uuid4())
        order_id = order_id or f"ord-{uuid.uuid4().hex[:6]}"
        request = NotificationRequested(
            event_id=nid, notification_id=nid, user_id=user_id, channel=channel, template="order_confirmed",
            params={"order_id": order_id, "total": "59.90 EUR"}, order_id=order_id,
            occurred_at=datetime.now(UTC))
        producer.produce(topic, key=nid.encode(), value=codec.encode(NOTIFICATIONS, request))
        producer.flush(10)
        return request
    return send


def test_a_request_sent_twice_delivers_one_email_with_both_parts(settings, topics, send_request, codec):
    topic, retry = topics
    email = f"n{uuid.uuid4().hex[:10]}@example.test"
    user_id = asyncio.run(add_user(settings, email))
    sender = start_sender(settings, topic=topic, retry_topic=retry)
    try:
        first = send_request(topic, user_id)
        eventually(lambda: len(sender.verdicts) == 1, timeout_s=30, give_up=sender.failure)
        send_request(topic, user_id, order_id=first.order_id, notification_id=first.notification_id)  # redelivered
        eventually(lambda: len(sender.verdicts) == 2, timeout_s=30, give_up=sender.failure)
        with Mailbox(settings) as mailbox:
            mails = mailbox.to(email)
        assert len(mails) == 1
        mail = mails[0]
        assert mail.subject == f"Your order {first.order_id} is confirmed"
        assert "we charged 59.90 EUR" in mail.text
        assert f"<strong>{first.order_id}</strong>" in mail.html
        told = [v for _, v in sender.verdicts]
        assert all(isinstance(v, Told) and v.sent.delivered for v in told)
        assert told[0].sent.event_id == told[1].sent.event_id  # the same outcome, told again
    finally:
        sender.close()


def test_opting_out_of_email_sends_nothing_and_records_it(settings, topics, send_request):
    topic, retry = topics
    email = f"n{uuid.uuid4().hex[:10]}@example.test"
    user_id = asyncio.run(add_user(settings, email))
    asyncio.run(_opt_out(settings, user_id, Channel.EMAIL))
    sender = start_sender(settings, topic=topic, retry_topic=retry)
    try:
        send_request(topic, user_id)
        eventually(lambda: len(sender.verdicts) == 1, timeout_s=30, give_up=sender.failure)
        verdict = sender.verdicts[0][1]
        assert isinstance(verdict, Told) and verdict.sent.outcome == "SKIPPED"
        assert verdict.sent.detail == "skipped: channel-off"
        with Mailbox(settings) as mailbox:
            assert mailbox.to(email) == []
    finally:
        sender.close()


def test_smtp_stopped_then_started_the_email_arrives_once_after_retries(settings, topics, send_request):
    from shopflow.deploy.stack import Stack

    topic, retry = topics
    email = f"n{uuid.uuid4().hex[:10]}@example.test"
    user_id = asyncio.run(add_user(settings, email))
    mail_only = Stack(settings, progress=print)
    mail_only.servers = [s for s in mail_only.servers if s.name == "mail"]
    sender = start_sender(settings, topic=topic, retry_topic=retry,
                          retry=RetryPolicy(attempts=8, first_s=0.5, max_s=2.0))
    try:
        mail_only.down()
        try:
            request = send_request(topic, user_id)
            eventually(lambda: any(isinstance(v, Again) for _, v in sender.verdicts), timeout_s=30,
                       give_up=sender.failure)
        finally:
            mail_only.up()
        eventually(lambda: any(isinstance(v, Told) for _, v in sender.verdicts), timeout_s=60, give_up=sender.failure)
        told = [v for _, v in sender.verdicts if isinstance(v, Told)]
        assert len(told) == 1 and told[0].sent.delivered and told[0].sent.attempts >= 2
        with Mailbox(settings) as mailbox:
            mails = mailbox.to(email)
        assert [m.subject for m in mails] == [f"Your order {request.order_id} is confirmed"]
    finally:
        sender.close()


async def _opt_out(settings: Settings, user_id: str, channel: Channel) -> None:
    from shopflow.db import connect

    conn = await connect(settings)
    try:
        await preferences.save(conn, user_id, preferences.Preferences(frozenset({channel})))
    finally:
        await conn.close()
