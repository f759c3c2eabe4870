"""The push channel: Web Push (RFC 8030) with VAPID (RFC 8292) and payload encryption (RFC 8291, aes128gcm).

The payload, ``{"title": subject, "body": text}`` as JSON, is encrypted for each of the user's
subscriptions with the browser's key (pywebpush, http_ece), and each POST to a push service carries a
VAPID token signed with this deployment's key. That key is derived from a secret generated once into
``.shopflow/secrets.env``, so every process of a stack (the edge handing out the public key, the sender
signing) has the same one without a key file. A subscription the push service answers 404 or 410 for
has expired: its row is deleted, and when none of the user's subscriptions is left, the send ends in
RecipientGone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from shopflow.notify.channels import (
    ChannelName,
    PermanentFailure,
    PushSubscription,
    Recipient,
    RecipientGone,
    RenderedMessage,
    TransientFailure,
)
from shopflow.settings import Settings, ensure_local_secret

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GONE_STATUSES = (404, 410)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vapid_private_key(settings: Settings) -> ec.EllipticCurvePrivateKey:
    """This deployment's VAPID key: a P-256 scalar derived from the stack's local secret."""
    secret = ensure_local_secret(settings.home, "SHOPFLOW_PUSH_VAPID_SECRET", 32).get_secret_value()
    digest = int.from_bytes(hashlib.sha256(b"shopflow vapid p-256\0" + secret.encode()).digest(), "big")
    return ec.derive_private_key(digest % (_P256_ORDER - 1) + 1, ec.SECP256R1())


def application_server_key(settings: Settings) -> str:
    """The VAPID public key as browsers want it (``applicationServerKey``): base64url, uncompressed point."""
    public = vapid_private_key(settings).public_key()
    return b64url(public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


# -- subscriptions in PostgreSQL ------------------------------------------------------------------------------

async def push_subscriptions_of(conn: asyncpg.Connection, user_id: str) -> list[PushSubscription]:
    rows = await conn.fetch("SELECT subscription_id, endpoint, p256dh, auth FROM push_subscriptions "
                            "WHERE user_id = $1 ORDER BY created_at", user_id)
    return [PushSubscription(endpoint=r["endpoint"], p256dh=r["p256dh"], auth=r["auth"],
                             subscription_id=str(r["subscription_id"])) for r in rows]


async def remove_subscription(conn: asyncpg.Connection, subscription: PushSubscription) -> None:
    await conn.execute("DELETE FROM push_subscriptions WHERE endpoint = $1", subscription.endpoint)


# -- the channel ----------------------------------------------------------------------------------------------

Remover = Callable[[PushSubscription], Awaitable[None]]


def _payload(message: RenderedMessage) -> str:
    return json.dumps({"title": message.subject, "body": message.text}, ensure_ascii=False)


@dataclass
class PushChannel:
    """Sends to every subscription of the recipient; delivered when at least one push service accepted it."""

    private_key: ec.EllipticCurvePrivateKey
    subject: str  # the VAPID `sub` claim: who to contact about this sender
    remove: Remover  # deletes an expired subscription
    ttl_s: int = 24 * 3600
    timeout_s: float = 10.0
    name: ChannelName = ChannelName.PUSH
    _vapid: Vapid = field(init=False)

    def __post_init__(self) -> None:
        self._vapid = Vapid(private_key=self.private_key)

    @classmethod
    def from_settings(cls, settings: Settings) -> PushChannel:
        from shopflow.db import connect

        async def remove(subscription: PushSubscription) -> None:
            conn = await connect(settings, application_name="shopflow-push")
            try:
                await remove_subscription(conn, subscription)
            finally:
                await conn.close()

        return cls(private_key=vapid_private_key(settings), subject=settings.push_vapid_subject, remove=remove,
                   ttl_s=settings.push_ttl_s, timeout_s=settings.push_timeout_s)

    async def send(self, message: RenderedMessage, recipient: Recipient) -> str:
        if not recipient.push_subscriptions:
            raise RecipientGone("the user has no push subscription")
        delivered: list[str] = []
        gone: list[str] = []
        failures: list[TransientFailure | PermanentFailure] = []
        for subscription in recipient.push_subscriptions:
            try:
                delivered.append(await self._send_one(_payload(message), subscription))
            except RecipientGone as exc:
                await self.remove(subscription)
                gone.append(exc.reason)
            except (TransientFailure, PermanentFailure) as exc:
                failures.append(exc)
        if delivered:
            return " ".join(delivered)
        if any(isinstance(f, TransientFailure) for f in failures):
            raise TransientFailure("; ".join(f.reason for f in failures))
        if failures:
            raise PermanentFailure("; ".join(f.reason for f in failures))
        raise RecipientGone("every push subscription has expired (removed): " + "; ".join(gone))

    async def _send_one(self, payload: str, subscription: PushSubscription) -> str:
        info = {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}}
        where = subscription.endpoint.split("?")[0]
        try:
            response = await webpush_async(info, payload, vapid_private_key=self._vapid,
                                           vapid_claims={"sub": self.subject}, ttl=self.ttl_s,
                                           timeout=self.timeout_s)
        except WebPushException as exc:
            status = exc.response.status if exc.response is not None else None
            if status in GONE_STATUSES:
                raise RecipientGone(f"{where} answered {status}: the subscription has expired") from exc
            if status is None or status == 429 or status >= 500:
                raise TransientFailure(f"push service {where}: {exc.message.splitlines()[0]}") from exc
            raise PermanentFailure(f"push service {where} refused the message: "
                                   f"{exc.message.splitlines()[0]}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransientFailure(f"push service {where} unreachable: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:  # a malformed key in the subscription: it can never be encrypted for
            raise PermanentFailure(f"the subscription's keys are unusable: {exc}") from exc
        # RFC 8030: the push service names the message it accepted in Location.
        return str(response.headers.get("Location") or where)
