"""The Redis read cache of products (``product:<sku>``, with a TTL), versioned so it never goes back.

An entry is "<version>|<product json>"; a fence is "<version>|" (no product): it is left by whoever
knows a newer version exists (the search indexer after applying an event, the edge right after its
own write) and sends readers to PostgreSQL. A read-through fill only lands if nothing newer is there,
so a reader that loaded version 4 just before the indexer fenced version 5 cannot put version 4 back
for a whole TTL. Redis being down only costs the cache: reads go to PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

import redis
import redis.asyncio as aioredis

from shopflow.catalog.products import Product

log = logging.getLogger(__name__)

PRODUCT_CACHE_TTL_S: Final = 300

_FILL_LUA: Final = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local v, mine = tonumber(string.sub(cur, 1, sep - 1)), tonumber(ARGV[1])
  if v > mine or (v == mine and sep < #cur) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"""
_FENCE_LUA: Final = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if tonumber(string.sub(cur, 1, sep - 1)) > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|', 'PX', ARGV[2])
return 1
"""


def product_cache_key(sku: str) -> str:
    return f"product:{sku}"


def invalidate_cached_products(client: redis.Redis, versions: Mapping[str, int],
                               ttl_s: float = PRODUCT_CACHE_TTL_S) -> None:
    """Fence the cache entries of these skus at the versions just applied (one round trip).

    Called by the search indexer after it applied the events; synchronous like the indexer.
    """
    if not versions:
        return
    fence = client.register_script(_FENCE_LUA)
    pipe = client.pipeline(transaction=False)
    for sku, version in versions.items():
        fence(keys=[product_cache_key(sku)], args=[version, int(ttl_s * 1000)], client=pipe)
    pipe.execute()


class ProductCache:
    """The cache as the repository and the edge use it (asynchronous)."""

    def __init__(self, client: aioredis.Redis, ttl_s: float = PRODUCT_CACHE_TTL_S):
        self.client = client
        self.ttl_ms = int(ttl_s * 1000)
        self._fill = client.register_script(_FILL_LUA)
        self._fence = client.register_script(_FENCE_LUA)

    async def get(self, sku: str) -> Product | None:
        """The cached product, or None when absent, fenced or Redis is unavailable (read PostgreSQL)."""
        try:
            cached = await self.client.get(product_cache_key(sku))
        except redis.RedisError as exc:
            log.warning("product cache unavailable, reading PostgreSQL: %s", exc)
            return None
        if not cached:
            return None
        _, _, payload = (cached.decode() if isinstance(cached, bytes) else cached).partition("|")
        return Product.from_json(payload) if payload else None  # an empty payload is a fence

    async def fill(self, product: Product) -> None:
        try:
            await self._fill(keys=[product_cache_key(product.sku)],
                             args=[product.version, product.to_json(), self.ttl_ms])
        except redis.RedisError as exc:
            log.warning("product cache unavailable, not caching %s: %s", product.sku, exc)

    async def fence(self, sku: str, version: int) -> None:
        """Invalidate the sku's entry up to ``version``. Best effort: if Redis fails, the indexer's
        fence follows anyway and the entry is bounded by its TTL."""
        try:
            await self._fence(keys=[product_cache_key(sku)], args=[version, self.ttl_ms])
        except redis.RedisError as exc:
            log.warning("product %s v%d written but its cache entry not fenced: %r", sku, version, exc)
