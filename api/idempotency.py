"""``Idempotency-Key`` on commands: a retried request gets the first response, not a second command.

The key is scoped to the caller (a user id, or ``anonymous`` for sign-up) and remembered in Redis
with the request's fingerprint (method, path and canonical JSON body):

- a first request claims the key with ``SET NX`` (a short lease), runs, and stores its response
  for ``idempotency_ttl_s``; only a 2xx response is stored: a refused request (4xx) or a failure
  releases the key, so a corrected or later retry runs for real;
- the same key with the same fingerprint replays the stored response (``Idempotent-Replayed: true``);
  while the first is still running, the duplicate waits a few seconds for its outcome, then gets 409;
- the same key with another fingerprint gets 422 saying so (the IETF idempotency-key draft's codes).

Claim, completion and release compare the lease value (Lua), so a request whose lease ran out can
never overwrite the outcome of another.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, status
from fastapi.responses import Response
from redis.asyncio import Redis

PREFIX = "shopflow:idem"
HEADER = "Idempotency-Key"
# What a key may be: 1 to 255 visible ASCII characters (a UUID is the usual choice).
KEY_PATTERN = r"^[!-~]{1,255}$"
REPLAYED_HEADER = "Idempotent-Replayed"
# Response headers that are part of the outcome and replayed with it.
_KEPT_HEADERS = ("location", "content-type")

_SET_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""
_DEL_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def fingerprint(method: str, path: str, body: Any) -> str:
    """The request's identity for key reuse: method, path and the body as canonical JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, redis: Redis, ttl_s: int, lease_s: int = 30, wait_s: float = 5.0, poll_s: float = 0.05):
        self.redis = redis
        self.ttl_s = ttl_s
        # Longer than the slowest command (the producer's delivery timeout), so a lease outlives its request.
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._set_if_ours = redis.register_script(_SET_IF_OURS)
        self._del_if_ours = redis.register_script(_DEL_IF_OURS)

    @staticmethod
    def redis_key(scope: str, key: str) -> str:
        # Hashed: the key is client-chosen text; its digest is a bounded, inert Redis key.
        return f"{PREFIX}:{scope}:{hashlib.sha256(key.encode()).hexdigest()}"

    async def run(self, scope: str, key: str, fp: str, handler: Callable[[], Awaitable[Response]]) -> Response:
        rkey = self.redis_key(scope, key)
        deadline = time.monotonic() + self.wait_s
        while True:
            lease = json.dumps({"state": "running", "fp": fp, "lease": uuid.uuid4().hex})
            if await self.redis.set(rkey, lease, nx=True, ex=self.lease_s):
                # Shielded: a client that hangs up mid-command must not leave a produced command
                # without its stored outcome, or its retry would produce a second one.
                return await asyncio.shield(asyncio.ensure_future(self._first(rkey, lease, fp, handler)))
            raw = await self.redis.get(rkey)
            if raw is None:
                continue  # released or expired between the two calls: claim again
            entry = json.loads(raw)
            if entry["fp"] != fp:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"{HEADER} {key!r} was already used for a different request (another body or path); "
                    "send a new key for a new request",
                )
            if entry["state"] == "done":
                return self._replay(entry)
            if time.monotonic() >= deadline:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"a request with {HEADER} {key!r} is still being processed; retry shortly with the same key",
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(self.poll_s)

    async def _first(self, rkey: str, lease: str, fp: str, handler: Callable[[], Awaitable[Response]]) -> Response:
        try:
            response = await handler()
        except BaseException:
            await self._del_if_ours(keys=[rkey], args=[lease])
            raise
        if 200 <= response.status_code < 300:
            done = json.dumps({
                "state": "done", "fp": fp, "status": response.status_code,
                "body": bytes(response.body).decode(),
                "headers": {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS},
            })
            await self._set_if_ours(keys=[rkey], args=[lease, done, self.ttl_s])
        else:
            await self._del_if_ours(keys=[rkey], args=[lease])
        return response

    @staticmethod
    def _replay(entry: dict) -> Response:
        headers = {**entry["headers"], REPLAYED_HEADER: "true"}
        return Response(entry["body"], status_code=entry["status"], headers=headers)
