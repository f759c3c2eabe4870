"""The email channel: a multipart text + HTML message, read back from the stack's mailpit; an invalid
address and a refused recipient are permanent failures, a server down or deferring is transient."""

from __future__ import annotations

import socket
import uuid

import pytest
from polling import eventually
from smtp_stub import smtp_stub

from shopflow.notify.channels import PermanentFailure, Recipient, RenderedMessage, TransientFailure
from shopflow.notify.email import EmailChannel, build_message

MESSAGE = RenderedMessage(subject="Your order ord-1 is confirmed", text="Order ord-1 is confirmed.\n",
                          html="<p>Order <strong>ord-1</strong> is confirmed.</p>")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nobody listens there


def _channel(port: int) -> EmailChannel:
    return EmailChannel(host="127.0.0.1", port=port, sender="ShopFlow <no-reply@shopflow.local>", timeout_s=5)


def _recipient(email: str | None) -> Recipient:
    return Recipient(user_id=str(uuid.uuid4()), email=email)


def test_a_message_is_multipart_alternative_with_the_text_first_and_the_html_preferred():
    mail = build_message(MESSAGE, "ShopFlow <no-reply@shopflow.local>", "ann@example.com")

    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert mail["From"] == "ShopFlow <no-reply@shopflow.local>" and mail["Subject"] == MESSAGE.subject


@pytest.mark.parametrize("address", [None, "", "ann", "ann@", "@example.com", "ann@example", "a b@example.com",
                                     "ann@exa mple.com", "<ann@example.com>", "ann..x@example.com",
                                     "ann@example.com\r\nBcc: eve@example.com"])
async def test_an_invalid_address_is_a_permanent_failure_before_any_smtp(address):
    # The port is closed: reaching SMTP would be a transient failure, so permanence proves no attempt.
    with pytest.raises(PermanentFailure, match="email address"):
        await _channel(_closed_port()).send(MESSAGE, _recipient(address))


async def test_the_server_down_is_a_transient_failure():
    with pytest.raises(TransientFailure, match="unreachable"):
        await _channel(_closed_port()).send(MESSAGE, _recipient("ann@example.com"))


async def test_a_recipient_refused_for_good_is_permanent_and_one_deferred_is_transient():
    async with smtp_stub("550 5.1.1 no such mailbox") as port:
        with pytest.raises(PermanentFailure, match="550 5.1.1 no such mailbox"):
            await _channel(port).send(MESSAGE, _recipient("gone@example.com"))
    async with smtp_stub("451 4.7.1 greylisted, try again later") as port:
        with pytest.raises(TransientFailure, match="451"):
            await _channel(port).send(MESSAGE, _recipient("new@example.com"))


@pytest.mark.integration
async def test_a_message_sent_through_mailpit_is_read_back_with_both_parts(stack):
    from shopflow.deploy.mail_server import Mailbox

    # Given a fresh address
    to = f"ann-{uuid.uuid4().hex[:8]}@example.com"

    # When the channel sends to it through the stack's SMTP server
    message_id = await EmailChannel.from_settings(stack).send(MESSAGE, _recipient(to))

    # Then mailpit holds exactly one message, with the provider id returned, both parts rendered
    with Mailbox(stack) as mailbox:
        [received] = eventually(lambda: mailbox.to(to), timeout_s=10, what=f"a message to {to}")
    assert received.message_id == message_id
    assert received.subject == MESSAGE.subject and received.sender == "no-reply@shopflow.local"
    assert received.text.strip() == MESSAGE.text.strip()
    assert "<strong>ord-1</strong>" in received.html
    print(f"\nas received by {to}:\nSubject: {received.subject}\n\n{received.text}\n{received.html}")


def test_the_settings_give_one_channel_per_avro_channel_symbol(tmp_path):
    from shopflow.notify.channels import ChannelName, channels_from_settings
    from shopflow.settings import Settings

    settings = Settings(_env_file=None, home=tmp_path, postgres_password="unused")  # type: ignore[call-arg]
    channels = channels_from_settings(settings)

    assert {name: channel.name for name, channel in channels.items()} == {c.value: c for c in ChannelName}


@pytest.mark.integration
async def test_a_send_while_the_server_is_down_is_transient_and_goes_through_once_it_is_back(stack, tmp_path):
    from mail_support import StandaloneMailServer

    from shopflow.deploy.mail_server import Mailbox

    to = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    with StandaloneMailServer(stack, tmp_path / "mail") as mail:
        channel = EmailChannel.from_settings(mail.settings)
        mail.stop()
        with pytest.raises(TransientFailure, match="unreachable"):
            await channel.send(MESSAGE, _recipient(to))
        mail.start()  # the same database: what it held before is still there
        await channel.send(MESSAGE, _recipient(to))
        with Mailbox(mail.settings) as mailbox:
            assert len(eventually(lambda: mailbox.to(to), timeout_s=10)) == 1
