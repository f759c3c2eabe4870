"""A local push service for tests and the demo: it plays the browser and its push service at once.

It makes subscriptions the way a browser does (a P-256 key pair and a 16-byte auth secret per
subscription, kept here), receives the sender's POSTs, checks their VAPID token (ES256 over the JWT,
signed by the key the token names, ``aud`` this service's origin, not expired) and decrypts the
aes128gcm payload with the subscription's private key, so a test reads what a user's browser would
show. A subscription can be expired (410 Gone) to exercise the channel's clean-up. It runs its own
event loop in a thread (local_server.py), so a blocking test or another process can push to it.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from shopflow.notify.channels import PushSubscription
from shopflow.notify.local_server import ThreadedServer
from shopflow.notify.push import b64url


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class ReceivedPush:
    """One decrypted push as the browser would get it."""

    token: str
    payload: dict
    vapid_subject: str
    ttl: int


@dataclass
class _Subscriber:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    gone: bool = False
    received: list[ReceivedPush] = field(default_factory=list)


class VapidRefused(Exception):
    pass


def verify_vapid(authorization: str, origin: str) -> str:
    """The VAPID token's ``sub`` when the header is valid for ``origin``; VapidRefused otherwise."""
    scheme, _, params = authorization.partition(" ")
    fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
    if scheme.lower() != "vapid" or "t" not in fields or "k" not in fields:
        raise VapidRefused("expected 'Authorization: vapid t=<jwt>, k=<key>'")
    header_b64, payload_b64, signature_b64 = fields["t"].split(".")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(fields["k"]))
    signature = _unb64(signature_b64)
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise VapidRefused("bad VAPID signature") from exc
    claims = json.loads(_unb64(payload_b64))
    if claims.get("aud") != origin:
        raise VapidRefused(f"VAPID aud {claims.get('aud')!r} is not {origin!r}")
    if int(claims.get("exp", 0)) < time.time():
        raise VapidRefused("VAPID token expired")
    return str(claims.get("sub", ""))


class LocalPushService:
    """``with LocalPushService() as push:`` listening on 127.0.0.1 (a free port) until the block ends."""

    def __init__(self) -> None:
        self._subscribers: dict[str, _Subscriber] = {}
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/push/{token}", self._push)
        self._server = ThreadedServer(app, "local-push-service")
        self.origin = ""

    # -- the browser's side ---------------------------------------------------------------------------------
    def subscribe(self) -> PushSubscription:
        """A new subscription, as ``PushSubscription.toJSON()`` would give it."""
        token = secrets.token_urlsafe(16)
        key = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        with self._lock:
            self._subscribers[token] = _Subscriber(private_key=key, auth=auth)
        public = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
        return PushSubscription(endpoint=f"{self.origin}/push/{token}", p256dh=b64url(public), auth=b64url(auth))

    def expire(self, subscription: PushSubscription) -> None:
        """From now on the push service answers 410 Gone for it."""
        with self._lock:
            self._subscribers[self._token(subscription)].gone = True

    def received(self, subscription: PushSubscription) -> list[ReceivedPush]:
        with self._lock:
            return list(self._subscribers[self._token(subscription)].received)

    @staticmethod
    def _token(subscription: PushSubscription) -> str:
        return subscription.endpoint.rsplit("/", 1)[1]

    # -- the push service's side ----------------------------------------------------------------------------
    async def _push(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        with self._lock:
            subscriber = self._subscribers.get(token)
        if subscriber is None:
            return web.Response(status=404, text="no such subscription")
        if subscriber.gone:
            return web.Response(status=410, text="subscription expired")
        try:
            sub = verify_vapid(request.headers.get("Authorization", ""), self.origin)
        except (VapidRefused, ValueError) as exc:
            return web.Response(status=401, text=str(exc))
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return web.Response(status=415, text="expected Content-Encoding: aes128gcm")
        body = await request.read()
        try:
            plain = http_ece.decrypt(body, private_key=subscriber.private_key, auth_secret=subscriber.auth,
                                     version="aes128gcm")
        except Exception as exc:  # noqa: BLE001 - any decryption error is the sender's fault: 400
            return web.Response(status=400, text=f"cannot decrypt: {exc}")
        message = ReceivedPush(token=token, payload=json.loads(plain), vapid_subject=sub,
                               ttl=int(request.headers.get("TTL", "0")))
        with self._lock:
            subscriber.received.append(message)
        location = f"{self.origin}/message/{token}/{len(subscriber.received)}"
        return web.Response(status=201, headers={"Location": location})

    def __enter__(self) -> LocalPushService:
        self.origin = self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
