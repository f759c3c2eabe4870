"""Per-user (and, before sign-in, per-address) request limits, counted in Redis.

A fixed window per subject: the first request opens a window of ``window_s`` seconds, later ones
count in it; a refused request gets ``Retry-After`` = the seconds until the window closes. Fixed
windows allow a burst of up to twice the limit across a window boundary; that is accepted here for
one round trip and one Redis command per request: a Lua script counts, sets the expiry (so no counter
is ever left without one) and, for signed-in users, checks the token's revocation in the same call
(auto-pipelined with other requests' calls, ``api.autopipeline``).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from shopflow.api.autopipeline import auto_pipeline
from shopflow.api.metrics import RATE_LIMITED

PREFIX = "shopflow:ratelimit"
REVOKED = -1  # what ``hit`` counts when the token is revoked: nothing was counted

# KEYS[1]: the counter; KEYS[2] (optional): a revocation key that, when present, stops the count.
_HIT = """
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then return {-1, 0} end
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


class FixedWindowLimiter:
    def __init__(self, name: str, limit: int, window_s: int):
        self.name = name
        self.limit = limit
        self.window_s = window_s
        self._scripts: dict[int, AsyncScript] = {}
        self._refused = RATE_LIMITED.labels(name)

    def key(self, subject: str) -> str:
        return f"{PREFIX}:{self.name}:{subject}"

    def decide(self, count: int, ttl: int) -> RateDecision:
        retry_after = ttl if ttl > 0 else self.window_s
        return RateDecision(count <= self.limit, self.limit, max(0, self.limit - count), retry_after)

    async def hit(self, redis: Redis, subject: str, unless_exists: str | None = None) -> RateDecision | None:
        """Count a request of ``subject``; None (and no count) when the key ``unless_exists`` exists."""
        keys = [self.key(subject)] + ([unless_exists] if unless_exists else [])
        script = self._scripts.get(id(redis))
        if script is None:  # EVALSHA from then on: the script's text is not sent with every request
            script = self._scripts[id(redis)] = redis.register_script(_HIT)
        count, ttl = await auto_pipeline(redis).script(script, keys, [self.window_s])
        if int(count) == REVOKED:
            return None
        decision = self.decide(int(count), int(ttl))
        if not decision.allowed:
            self._refused.inc()
        return decision
