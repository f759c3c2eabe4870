"""The SMS channel: a provider adapter speaking Twilio's Messages API.

``POST {sms_api_url}/2010-04-01/Accounts/{sid}/Messages.json`` with the form fields To, From and Body,
HTTP basic auth (account sid, auth token); 201 answers the message resource, whose ``sid`` is the
provider's message id. Another provider is another adapter with the same ``send``. No provider can be
reached from here: tests and the demo run shopflow.notify.sms_standin, a stand-in for the provider's API.
Numbers are E.164 (+ country code, up to 15 digits); anything else is refused before any request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from shopflow.notify.channels import ChannelName, PermanentFailure, Recipient, RenderedMessage, TransientFailure
from shopflow.settings import Settings

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Twilio's error codes for a recipient that can never be texted (invalid, unreachable, opted out).
_RECIPIENT_CODES = {21211: "invalid 'To' number", 21614: "not a mobile number", 21610: "the recipient opted out"}


def checked_number(phone: str | None) -> str:
    if not phone:
        raise PermanentFailure("the user has no phone number")
    if not E164.match(phone):
        raise PermanentFailure(f"invalid phone number {phone!r}: expected E.164, e.g. +14155550123")
    return phone


@dataclass
class SmsChannel:
    """Texts through the provider at ``api_url``; a message longer than a segment is split by the provider."""

    api_url: str
    account_sid: str
    auth_token: str
    sender: str
    timeout_s: float = 10.0
    name: ChannelName = ChannelName.SMS

    @classmethod
    def from_settings(cls, settings: Settings) -> SmsChannel:
        token = settings.sms_auth_token.get_secret_value() if settings.sms_auth_token else ""
        return cls(api_url=settings.sms_api_url.rstrip("/"), account_sid=settings.sms_account_sid, auth_token=token,
                   sender=settings.sms_from, timeout_s=settings.sms_timeout_s)

    async def send(self, message: RenderedMessage, recipient: Recipient) -> str:
        to = checked_number(recipient.phone)
        if not (self.api_url and self.account_sid and self.auth_token):
            raise PermanentFailure("SMS is not configured: set SHOPFLOW_SMS_API_URL, SHOPFLOW_SMS_ACCOUNT_SID "
                                   "and SHOPFLOW_SMS_AUTH_TOKEN")
        url = f"{self.api_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                answer = await client.post(url, data={"To": to, "From": self.sender, "Body": message.text},
                                           auth=(self.account_sid, self.auth_token))
        except httpx.HTTPError as exc:
            raise TransientFailure(f"SMS provider unreachable: {type(exc).__name__}: {exc}") from exc
        if answer.status_code == 201:
            return str(answer.json()["sid"])
        reason = _reason(answer)
        if answer.status_code == 429 or answer.status_code >= 500:
            raise TransientFailure(f"SMS provider answered {answer.status_code}: {reason}")
        raise PermanentFailure(f"SMS provider refused the message ({answer.status_code}): {reason}")


def _reason(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    code = body.get("code")
    return f"{code} {_RECIPIENT_CODES.get(code, body.get('message', ''))}".strip()
