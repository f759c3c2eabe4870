"""What the cart and wishlist routes read and remember: the workers' cart view, read-your-writes marks,
catalog lookups and the wishlist's SQL (parameterised, in the edge's schema).

The cart lives in the carts agent's RocksDB table; any worker answers ``GET /carts/{cart_id}/``
(Faust routes it to the worker that owns the key): 200 with the cart, 404 for a cart never used.
Every command the edge accepts for a cart raises the cart's mark in Redis to the command's
``occurred_at`` (milliseconds) and event id. The cart reflects the caller's writes once the agent has
applied that command: its event id is among the cart's ``processed`` ids. ``updated_ms >= mark`` alone
is not enough, since the agent stamps ``updated_ms`` with its own clock when that is later, which can
pass a command still queued behind the one being applied; it is the fallback only when the view
carries no ``processed`` ids, or when the id may have aged out of them (``PROCESSED_KEPT``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from shopflow.tables.values import PROCESSED_KEPT

MARK_PREFIX = "shopflow:carts:mark"
MARK_TTL_S = 24 * 3600
CHECKOUT_LOCK_PREFIX = "shopflow:carts:checkout"
POLL_S = 0.1

# Raise the mark ("<ms> <event_id>") only forward: two commands accepted out of order must not lower it.
_RAISE_MARK = """
local cur = redis.call('GET', KEYS[1])
local cur_ms = 0
if cur then cur_ms = tonumber(string.match(cur, '^(%d+)')) or 0 end
if tonumber(ARGV[1]) >= cur_ms then
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[3])
else
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Mark:
    """The caller's last accepted command on a cart: its time and event id."""

    ms: int = 0
    event_id: str | None = None


class WorkersUnavailable(Exception):
    """No Faust worker answered for the cart (none running, or the key's owner is rebalancing)."""


class CartMarks:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._raise = redis.register_script(_RAISE_MARK)

    @staticmethod
    def key(cart_id: str) -> str:
        return f"{MARK_PREFIX}:{cart_id}"

    async def raise_to(self, cart_id: str, occurred_ms: int, event_id: str) -> None:
        await self._raise(keys=[self.key(cart_id)], args=[occurred_ms, event_id, MARK_TTL_S])

    async def get(self, cart_id: str) -> Mark:
        raw = await self.redis.get(self.key(cart_id))
        if raw is None:
            return Mark()
        ms, _, event_id = (raw.decode() if isinstance(raw, bytes) else raw).partition(" ")
        return Mark(int(ms), event_id or None)


async def fetch_cart(workers: httpx.AsyncClient | None, cart_id: str) -> dict[str, Any] | None:
    """The worker's view of the cart; ``None`` for a cart never used."""
    if workers is None:
        raise WorkersUnavailable("the edge has no worker URL configured (SHOPFLOW_WORKER_URL)")
    try:
        r = await workers.get(f"/carts/{cart_id}/")
    except httpx.HTTPError as exc:
        raise WorkersUnavailable(f"no Faust worker answered at {workers.base_url} ({exc.__class__.__name__}); "
                                 "start one with `shopflow worker`") from None
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise WorkersUnavailable(f"the worker answered {r.status_code} for cart {cart_id}")
    try:
        view = r.json()
    except ValueError:
        raise WorkersUnavailable("the worker answered something that is not JSON") from None
    if not isinstance(view, dict):
        raise WorkersUnavailable("the worker answered an unexpected cart shape")
    return view


def reached(view: Mapping[str, Any] | None, mark: Mark) -> bool:
    """Whether the cart shows the command of ``mark`` (see the module's doc)."""
    if mark.ms <= 0:
        return True
    if view is None:
        return False
    processed = view.get("processed")
    if isinstance(processed, list) and mark.event_id is not None:
        if mark.event_id in processed:
            return True
        if len(processed) < PROCESSED_KEPT:
            return False
    return int(view.get("updated_ms") or 0) >= mark.ms


async def wait_for_cart(workers: httpx.AsyncClient | None, cart_id: str, mark: Mark,
                        wait_s: float) -> tuple[dict[str, Any] | None, bool]:
    """The cart once it shows ``mark``'s command (polling the worker), or as it is when ``wait_s`` runs
    out; with whether it did."""
    deadline = time.monotonic() + wait_s
    while True:
        view = await fetch_cart(workers, cart_id)
        if reached(view, mark):
            return view, True
        if time.monotonic() >= deadline:
            return view, False
        await asyncio.sleep(POLL_S)


async def checkout_lock(redis: Redis, cart_id: str, lease_s: int = 30) -> str | None:
    """A short lease so two checkouts of one cart cannot both read it before either closes it."""
    import uuid

    token = uuid.uuid4().hex
    if await redis.set(f"{CHECKOUT_LOCK_PREFIX}:{cart_id}", token, nx=True, ex=lease_s):
        return token
    return None


_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def checkout_unlock(redis: Redis, cart_id: str, token: str) -> None:
    await redis.eval(_UNLOCK, 1, f"{CHECKOUT_LOCK_PREFIX}:{cart_id}", token)


# -- the wishlist (shopflow/migrations/0005_wishlist.sql) --------------------------------------------------

_WISHLIST_SELECT = (
    "SELECT w.sku, w.added_at, p.name, p.price_minor, p.currency, p.active, p.deleted_at "
    "FROM wishlist_items w LEFT JOIN products p ON p.sku = w.sku "
)


async def wishlist(conn: asyncpg.Connection, user_id: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(_WISHLIST_SELECT + "WHERE w.user_id = $1::uuid ORDER BY w.added_at DESC, w.sku LIMIT $2",
                            user_id, limit)


async def wishlist_put(conn: asyncpg.Connection, user_id: str, sku: str, limit: int) -> asyncpg.Record | None:
    """Add the sku (kept as is if already there); ``None`` when the list is full. Serialised per user."""
    async with conn.transaction():
        # One writer per user at a time, so the size check and the insert cannot interleave.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('shopflow.wishlist'), hashtext($1))", user_id)
        present = await conn.fetchval("SELECT 1 FROM wishlist_items WHERE user_id = $1::uuid AND sku = $2",
                                      user_id, sku)
        if not present:
            count = await conn.fetchval("SELECT count(*) FROM wishlist_items WHERE user_id = $1::uuid", user_id)
            if count >= limit:
                return None
            await conn.execute("INSERT INTO wishlist_items (user_id, sku) VALUES ($1::uuid, $2) "
                               "ON CONFLICT (user_id, sku) DO NOTHING", user_id, sku)
        return await conn.fetchrow(_WISHLIST_SELECT + "WHERE w.user_id = $1::uuid AND w.sku = $2", user_id, sku)


async def wishlist_delete(conn: asyncpg.Connection, user_id: str, sku: str) -> bool:
    status = await conn.execute("DELETE FROM wishlist_items WHERE user_id = $1::uuid AND sku = $2", user_id, sku)
    return status.endswith(" 1")
