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
never overwrite the outcome of another. A command may return an ``Outcome``: its response plus the
Redis keys it leaves behind (the order routes' read-your-writes markers), written by the same script
that stores the response: one round trip after the command instead of two. Every call here is
auto-pipelined with other requests' (``api.autopipeline``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from fastapi import HTTPException, status
from fastapi.responses import Response
from redis.asyncio import Redis

from shopflow.api.autopipeline import auto_pipeline
from shopflow.api.metrics import IDEMPOTENT_REPLAYS

log = logging.getLogger(__name__)

PREFIX = "shopflow:idem"
HEADER = "Idempotency-Key"
# What a key may be: 1 to 255 visible ASCII characters (a UUID is the usual choice).
KEY_PATTERN = r"^[!-~]{1,255}$"
REPLAYED_HEADER = "Idempotent-Replayed"
# Response headers that are part of the outcome and replayed with it.
_KEPT_HEADERS = ("location", "content-type")

# KEYS[1]: the idempotency key, ARGV[1..3]: our lease, the outcome to store (empty: release the key), its TTL.
# KEYS[2..n]: keys the command leaves, each with its value and TTL in ARGV[2i], ARGV[2i+1]; written
# whatever became of the lease: the command they describe has happened.
_COMPLETE = """
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2 * i], 'EX', ARGV[2 * i + 1])
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""
_DEL_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class RedisWrite:
    """A key a command leaves in Redis (SET with a TTL)."""

    key: str
    value: str
    ttl_s: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """A command's response and the keys it leaves, stored together with the response."""

    response: Response
    writes: tuple[RedisWrite, ...] = ()


Handler = Callable[[], Awaitable[Response | Outcome]]


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
        self._complete = redis.register_script(_COMPLETE)
        self._del_if_ours = redis.register_script(_DEL_IF_OURS)
        self._pipeline = auto_pipeline(redis)

    @staticmethod
    def redis_key(scope: str, key: str) -> str:
        # Hashed: the key is client-chosen text; its digest is a bounded, inert Redis key.
        return f"{PREFIX}:{scope}:{hashlib.sha256(key.encode()).hexdigest()}"

    async def run(self, scope: str, key: str, fp: str, handler: Handler) -> Response:
        rkey = self.redis_key(scope, key)
        deadline = time.monotonic() + self.wait_s
        while True:
            lease = json.dumps({"state": "running", "fp": fp, "lease": uuid.uuid4().hex})
            if await self._pipeline.execute("SET", rkey, lease, "NX", "EX", self.lease_s):
                # Shielded: a client that hangs up mid-command must not leave a produced command
                # without its stored outcome, or its retry would produce a second one.
                return await asyncio.shield(asyncio.ensure_future(self._first(rkey, lease, fp, handler)))
            raw = await self._pipeline.execute("GET", rkey)
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
                IDEMPOTENT_REPLAYS.inc()
                return self._replay(entry)
            if time.monotonic() >= deadline:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"a request with {HEADER} {key!r} is still being processed; retry shortly with the same key",
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(self.poll_s)

    async def _first(self, rkey: str, lease: str, fp: str, handler: Handler) -> Response:
        try:
            result = await handler()
        except BaseException:
            await self._pipeline.script(self._del_if_ours, [rkey], [lease])
            raise
        outcome = result if isinstance(result, Outcome) else Outcome(result)
        response = outcome.response
        done = ""  # a refused or failed command is not stored: the key is released for a corrected retry
        if 200 <= response.status_code < 300:
            done = json.dumps({
                "state": "done", "fp": fp, "status": response.status_code,
                "body": bytes(response.body).decode(),
                "headers": {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS},
            })
        keys, args = [rkey], [lease, done, self.ttl_s]
        for write in outcome.writes:
            keys.append(write.key)
            args += [write.value, write.ttl_s]
        try:
            await self._pipeline.script(self._complete, keys, args)
        except redis.exceptions.RedisError as exc:
            # The command has happened: answer it. A retry meets the lease until it runs out (409).
            log.warning("outcome of %s not stored (%d keys with it): %r", rkey, len(outcome.writes), exc)
        return response

    @staticmethod
    def _replay(entry: dict) -> Response:
        headers = {**entry["headers"], REPLAYED_HEADER: "true"}
        return Response(entry["body"], status_code=entry["status"], headers=headers)
