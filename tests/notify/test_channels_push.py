"""The push channel over the whole Web Push protocol: VAPID-signed, encrypted for the subscription's key,
decrypted by a local push service that plays the browser; 410 removes the subscription."""

from __future__ import annotations

import socket
import uuid

import pytest

from shopflow.notify.channels import (
    PermanentFailure,
    PushSubscription,
    Recipient,
    RecipientGone,
    RenderedMessage,
    TransientFailure,
)
from shopflow.notify.push import PushChannel, application_server_key, vapid_private_key
from shopflow.notify.push_endpoint import LocalPushService
from shopflow.settings import Settings

MESSAGE = RenderedMessage(subject="Order confirmed", text="Order ord-1 is confirmed (59.90).")


@pytest.fixture
def push():
    with LocalPushService() as service:
        yield service


@pytest.fixture
def removed() -> list[PushSubscription]:
    return []


@pytest.fixture
def channel(tmp_path, removed) -> PushChannel:
    settings = Settings(_env_file=None, home=tmp_path, postgres_password="unused")  # type: ignore[call-arg]

    async def remove(subscription: PushSubscription) -> None:
        removed.append(subscription)

    return PushChannel(private_key=vapid_private_key(settings), subject="mailto:ops@shopflow.local",
                       remove=remove, ttl_s=60, timeout_s=5)


def _to(*subscriptions: PushSubscription) -> Recipient:
    return Recipient(user_id=str(uuid.uuid4()), push_subscriptions=list(subscriptions))


async def test_a_push_is_signed_encrypted_and_decrypted_by_the_subscriptions_browser(channel, push):
    subscription = push.subscribe()

    message_id = await channel.send(MESSAGE, _to(subscription))

    [received] = push.received(subscription)
    assert received.payload == {"title": "Order confirmed", "body": "Order ord-1 is confirmed (59.90)."}
    assert received.vapid_subject == "mailto:ops@shopflow.local" and received.ttl == 60
    assert message_id == f"{push.origin}/message/{received.token}/1"


async def test_an_expired_subscription_is_removed_and_the_others_still_get_it(channel, push, removed):
    kept, expired = push.subscribe(), push.subscribe()
    push.expire(expired)

    await channel.send(MESSAGE, _to(expired, kept))

    assert removed == [expired]
    assert len(push.received(kept)) == 1


async def test_when_every_subscription_has_expired_the_recipient_is_gone(channel, push, removed):
    only = push.subscribe()
    push.expire(only)

    with pytest.raises(RecipientGone, match="410"):
        await channel.send(MESSAGE, _to(only))
    assert removed == [only]
    with pytest.raises(RecipientGone, match="no push subscription"):
        await channel.send(MESSAGE, _to())


async def test_a_token_signed_by_another_key_is_refused_by_the_push_service_for_good(channel, push):
    # Given a sender whose token names one key (k) but was signed with another
    channel._vapid.sign = _signing_with_a_wrong_key(channel._vapid.sign)  # type: ignore[method-assign]

    # Then the push service refuses it (401), which no retry can change
    with pytest.raises(PermanentFailure, match="401"):
        await channel.send(MESSAGE, _to(push.subscribe()))


def _signing_with_a_wrong_key(sign):
    def wrong(claims, crypto_key=None):
        headers = sign(claims, crypto_key)
        token, _key = headers["Authorization"].split(",k=")
        return {"Authorization": f"{token},k={_stranger_key()}"}
    return wrong


def _stranger_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from shopflow.notify.push import b64url

    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return b64url(public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


async def test_a_push_service_down_is_transient(channel):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subscription = PushSubscription(endpoint=f"http://127.0.0.1:{port}/push/x",
                                    p256dh=_stranger_key(), auth="AAAAAAAAAAAAAAAAAAAAAA")

    with pytest.raises(TransientFailure, match="unreachable"):
        await channel.send(MESSAGE, _to(subscription))


def test_the_vapid_key_is_the_same_for_every_process_of_a_stack_and_differs_between_stacks(tmp_path):
    def settings(home):
        return Settings(_env_file=None, home=home, postgres_password="unused")  # type: ignore[call-arg]

    assert application_server_key(settings(tmp_path / "a")) == application_server_key(settings(tmp_path / "a"))
    assert application_server_key(settings(tmp_path / "a")) != application_server_key(settings(tmp_path / "b"))
    assert len(application_server_key(settings(tmp_path / "a"))) == 87  # 65 bytes, base64url unpadded
