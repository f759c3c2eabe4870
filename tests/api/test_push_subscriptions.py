"""A user's push subscriptions: registered through the edge with the key the edge hands out, pushed to
over the whole Web Push protocol by the channel the sender uses, and deleted when the service says 410."""

from __future__ import annotations

import uuid

import pytest

from shopflow.notify.channels import Recipient, RecipientGone, RenderedMessage
from shopflow.notify.push import PushChannel, application_server_key, push_subscriptions_of
from shopflow.notify.push_endpoint import LocalPushService

pytestmark = pytest.mark.integration

BASE = "/v1/users/me/push-subscriptions"


@pytest.fixture
def push():
    with LocalPushService() as service:
        yield service


def _json(subscription) -> dict:
    return {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
            "expirationTime": None}


async def test_a_registered_subscription_gets_the_push_and_is_removed_once_expired(app, client, new_account, push):
    user = await new_account()
    edge = app.state.edge
    key = await client.get("/v1/push/application-server-key", headers=user.auth)
    assert key.json()["application_server_key"] == application_server_key(edge.settings)

    # Given a subscription registered through the edge (twice: still one)
    subscription = push.subscribe()
    first = await client.post(BASE, json=_json(subscription), headers=user.auth)
    again = await client.post(BASE, json=_json(subscription), headers=user.auth)
    assert first.status_code == again.status_code == 201, first.text
    assert first.json()["subscription_id"] == again.json()["subscription_id"]

    # When the sender's channel pushes to the user's subscriptions, Then the browser decrypts it
    channel = PushChannel.from_settings(edge.settings)
    message = RenderedMessage(subject="Order confirmed", text="Order ord-9 is confirmed.")
    async with edge.pool.acquire() as conn:
        recipient = Recipient(user_id=user.id, push_subscriptions=await push_subscriptions_of(conn, user.id))
    await channel.send(message, recipient)
    [received] = push.received(subscription)
    assert received.payload == {"title": "Order confirmed", "body": "Order ord-9 is confirmed."}
    print(f"\npush as decrypted by the subscription's browser: {received.payload} (VAPID sub {received.vapid_subject})")

    # When the push service says it has expired, Then the send ends in RecipientGone and the row is gone
    push.expire(subscription)
    with pytest.raises(RecipientGone):
        await channel.send(message, recipient)
    assert (await client.get(BASE, headers=user.auth)).json()["items"] == []


async def test_bad_subscriptions_are_refused_and_an_endpoint_stays_with_its_user(client, new_account, push):
    ann, bob = await new_account(), await new_account()
    subscription = push.subscribe()

    assert (await client.post(BASE, json=_json(subscription))).status_code == 401
    bad_key = {**_json(subscription), "keys": {"p256dh": "not-a-key!", "auth": subscription.auth}}
    assert (await client.post(BASE, json=bad_key, headers=ann.auth)).status_code == 422
    plain_http = {**_json(subscription), "endpoint": "http://push.example.com/x"}
    assert (await client.post(BASE, json=plain_http, headers=ann.auth)).status_code == 422

    assert (await client.post(BASE, json=_json(subscription), headers=ann.auth)).status_code == 201
    taken = await client.post(BASE, json=_json(subscription), headers=bob.auth)
    assert taken.status_code == 409, taken.text
    assert (await client.delete(f"{BASE}/{uuid.uuid4()}", headers=bob.auth)).status_code == 404
