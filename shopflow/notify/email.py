"""The email channel: multipart (text + HTML) messages over SMTP, to the stack's mailpit or any relay.

Failures are told apart by what retrying could change: an address that is not an address, or a
recipient the server refuses for good (5xx), is permanent; a server that is down, slow, or answers
4xx (greylisting, "try again later") is transient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

import aiosmtplib

from shopflow.notify.channels import ChannelName, PermanentFailure, Recipient, RenderedMessage, TransientFailure
from shopflow.settings import Settings

# What a mailbox address must look like to be worth an SMTP conversation: one @, a dotted domain of
# letters, digits and hyphens, no spaces or angle brackets (which would make it header syntax).
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")


def checked_address(email: str | None) -> str:
    """The address, or PermanentFailure saying why it cannot be sent to."""
    if not email:
        raise PermanentFailure("the user has no email address")
    if not _ADDRESS.match(email) or ".." in email.split("@")[0]:
        raise PermanentFailure(f"invalid email address {email!r}")
    return email


def build_message(message: RenderedMessage, sender: str, to: str) -> EmailMessage:
    """A multipart/alternative message: the text part first, the HTML part (when there is one) preferred."""
    mail = EmailMessage()
    name, address = parseaddr(sender)
    local, _, domain = address.partition("@")
    mail["From"] = Address(display_name=name, username=local, domain=domain)
    mail["To"] = to
    mail["Subject"] = message.subject
    mail["Message-ID"] = make_msgid(domain=domain or None)
    mail.set_content(message.text)
    if message.html is not None:
        mail.add_alternative(message.html, subtype="html")
    return mail


@dataclass
class EmailChannel:
    """Sends through one SMTP server (host, port); each send is its own short SMTP session."""

    host: str
    port: int
    sender: str
    timeout_s: float = 10.0
    name: ChannelName = ChannelName.EMAIL

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailChannel:
        return cls(host=settings.host, port=settings.mail_smtp_port, sender=settings.mail_from,
                   timeout_s=settings.mail_timeout_s)

    async def send(self, message: RenderedMessage, recipient: Recipient) -> str:
        to = checked_address(recipient.email)
        try:
            mail = build_message(message, self.sender, to)
        except ValueError as exc:  # a header the email package refuses (e.g. a line break): no retry helps
            raise PermanentFailure(f"the message cannot be built: {exc}") from exc
        try:
            await aiosmtplib.send(mail, hostname=self.host, port=self.port, timeout=self.timeout_s,
                                  start_tls=False, use_tls=False)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            reason = "; ".join(f"{e.code} {e.message}" for e in exc.recipients)
            if all(code >= 500 for code in codes):
                raise PermanentFailure(f"the server refused {to}: {reason}") from exc
            raise TransientFailure(f"the server deferred {to}: {reason}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentFailure(f"the server refused the message: {exc.code} {exc.message}") from exc
            raise TransientFailure(f"the server deferred the message: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientFailure(f"SMTP server {self.host}:{self.port} unreachable: "
                                   f"{type(exc).__name__}: {exc}") from exc
        return str(mail["Message-ID"]).strip("<>")
