"""The one interface every notification channel speaks, and the failures a sender acts on.

A sender renders a template into a RenderedMessage, picks the Channel for the request's channel name
and calls `send`. What happens next depends only on the exception class: TransientFailure is retried
later, PermanentFailure goes to the dead-letter topic, RecipientGone means the address no longer exists
(the push subscription has been removed) and is recorded as such. The channels themselves live in
shopflow.notify.email (SMTP), shopflow.notify.push (Web Push) and shopflow.notify.sms (a Twilio-shaped
provider adapter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from shopflow.schemas.notifications import Channel as ChannelName

if TYPE_CHECKING:
    from shopflow.settings import Settings

__all__ = [
    "Channel",
    "ChannelName",
    "DeliveryFailure",
    "PermanentFailure",
    "PushSubscription",
    "Recipient",
    "RecipientGone",
    "RenderedMessage",
    "TransientFailure",
    "channels_from_settings",
]


class DeliveryFailure(Exception):
    """A channel could not deliver a message; `reason` says why, in words fit for the history."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientFailure(DeliveryFailure):
    """Try again later: the provider is down, timed out or answered 5xx/429."""


class PermanentFailure(DeliveryFailure):
    """Retrying cannot help: invalid address, refused by the provider (4xx), nothing to send to."""


class RecipientGone(DeliveryFailure):
    """The address is gone for good (a push subscription answered 404/410); it has been removed."""


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A template rendered for one channel: the subject (email only), the text body, the HTML body."""

    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A browser's Web Push subscription (the PushSubscription.toJSON() of the Push API)."""

    endpoint: str
    p256dh: str  # the user agent's public key, base64url (uncompressed P-256 point)
    auth: str  # the 16-byte auth secret, base64url
    subscription_id: str | None = None  # the row in push_subscriptions, to remove it when it is gone


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where a user can be reached; a channel uses only its own address."""

    user_id: str
    email: str | None = None
    phone: str | None = None
    push_subscriptions: list[PushSubscription] = field(default_factory=list)


class Channel(Protocol):
    """Delivers a rendered message to one recipient through one medium."""

    name: ChannelName

    async def send(self, message: RenderedMessage, recipient: Recipient) -> str:
        """Deliver, returning the provider's message id; raise a DeliveryFailure subclass otherwise."""
        ...


def channels_from_settings(settings: Settings) -> dict[str, Channel]:
    """The configured channels keyed by channel name ("EMAIL", "SMS", "PUSH")."""
    # Imported here: each channel module imports this one for the records and failures above.
    from shopflow.notify.email import EmailChannel
    from shopflow.notify.push import PushChannel
    from shopflow.notify.sms import SmsChannel

    return {ChannelName.EMAIL.value: EmailChannel.from_settings(settings),
            ChannelName.PUSH.value: PushChannel.from_settings(settings),
            ChannelName.SMS.value: SmsChannel.from_settings(settings)}
