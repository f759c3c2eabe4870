"""The SMS channel against the stand-in for the provider's API (Twilio's Messages API shape): sent,
refused for good (bad number, bad credentials), or deferred (the provider's outage, unreachable)."""

from __future__ import annotations

import socket
import uuid

import httpx
import pytest

from shopflow.notify.channels import PermanentFailure, Recipient, RenderedMessage, TransientFailure
from shopflow.notify.sms import SmsChannel
from shopflow.notify.sms_standin import SmsProviderStandIn

MESSAGE = RenderedMessage(subject="", text="ShopFlow: order ord-1 is confirmed (59.90).")


@pytest.fixture
def provider():
    with SmsProviderStandIn() as standin:
        yield standin


def _channel(provider: SmsProviderStandIn, **changes) -> SmsChannel:
    values = {"api_url": provider.origin, "account_sid": provider.account_sid, "auth_token": provider.auth_token,
              "sender": "+15005550006", "timeout_s": 5, **changes}
    return SmsChannel(**values)


def _to(phone: str | None) -> Recipient:
    return Recipient(user_id=str(uuid.uuid4()), phone=phone)


async def test_a_text_is_sent_and_the_providers_message_sid_returned(provider):
    sid = await _channel(provider).send(MESSAGE, _to("+14155550123"))

    [sent] = provider.sent
    assert (sent.sid, sent.to, sent.sender, sent.body) == (sid, "+14155550123", "+15005550006", MESSAGE.text)


@pytest.mark.parametrize("phone", [None, "", "0155550123", "+0155550123", "+1 415 555 0123", "+1234"])
async def test_a_number_that_is_not_e164_is_refused_before_any_request(provider, phone):
    with pytest.raises(PermanentFailure, match="phone number"):
        await _channel(provider).send(MESSAGE, _to(phone))
    assert provider.sent == []


async def test_the_stand_in_answers_a_bad_number_as_the_provider_does(provider):
    answer = httpx.post(f"{provider.origin}/2010-04-01/Accounts/{provider.account_sid}/Messages.json",
                        data={"To": "12345", "From": "+15005550006", "Body": "x"},
                        auth=(provider.account_sid, provider.auth_token))
    assert answer.status_code == 400 and answer.json()["code"] == 21211


async def test_bad_credentials_are_permanent_and_an_outage_is_transient(provider):
    with pytest.raises(PermanentFailure, match="401.*20003"):
        await _channel(provider, auth_token="wrong").send(MESSAGE, _to("+14155550123"))

    provider.fail_next(1)
    with pytest.raises(TransientFailure, match="503"):
        await _channel(provider).send(MESSAGE, _to("+14155550123"))
    # The outage over, the same send goes through
    await _channel(provider).send(MESSAGE, _to("+14155550123"))
    assert len(provider.sent) == 1


async def test_an_unreachable_provider_is_transient_and_an_unconfigured_one_permanent(provider):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(TransientFailure, match="unreachable"):
        await _channel(provider, api_url=closed).send(MESSAGE, _to("+14155550123"))
    with pytest.raises(PermanentFailure, match="SMS is not configured"):
        await _channel(provider, api_url="").send(MESSAGE, _to("+14155550123"))
