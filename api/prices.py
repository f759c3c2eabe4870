"""The catalog's prices as the order routes charge them: read from PostgreSQL, kept per edge process
until PostgreSQL says they changed.

Every committed change of a product row NOTIFYs ``shopflow_products`` with its sku (migration
0006_products_notify.sql); the price book LISTENs on a connection of its own and drops that sku.
So a price is never served after its change is known here, and a change is known here as soon as
its transaction commits (the notification's delivery, a millisecond on one host): an order placed in
that window is priced as if it had come just before the change. What is not cached: unknown skus
(each miss asks PostgreSQL again). While the LISTEN connection is down, nothing is served from memory
(every lookup reads PostgreSQL) and the book reconnects in the background; on reconnecting it starts
empty, since changes made meanwhile were not heard.

A read that raced a change cannot put the old price back: a sku notified while the read was in
flight is answered from that read but not stored (each read in flight collects the skus notified
meanwhile; changes to other skus do not keep it from caching).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shopflow.api.pg import connect
from shopflow.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "shopflow_products"
EVERY_SKU = "*"  # the payload after a TRUNCATE
RECONNECT_S = 1.0
# A bound on memory for very large catalogs: past it, the book starts again from empty.
MAX_ENTRIES = 100_000


class CatalogUnavailable(Exception):
    """There is no ``products`` table to price from (migrations not applied)."""


@dataclass(frozen=True, slots=True)
class Price:
    price_minor: int
    currency: str
    active: bool


class PriceBook:
    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool = pool
        self.settings = settings
        self._prices: dict[str, Price] = {}
        # Per read in flight (keyed by a token of its own): the skus notified while it runs ('*': all).
        self._racing: dict[object, set[str]] = {}
        self._listener: asyncpg.Connection | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    async def start(self) -> None:
        await self._listen()

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        if self._listener is not None:
            await self._listener.close()

    async def _listen(self) -> None:
        conn = await connect(self.settings)
        await conn.add_listener(CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_lost)
        self._forget_all()  # whatever changed while nobody listened
        self._listener = conn

    def _on_lost(self, _conn: object) -> None:
        self._listener = None
        self._forget_all()
        if not self._closed and (self._reconnect is None or self._reconnect.done()):
            log.warning("price book: LISTEN %s lost; reading prices from PostgreSQL until it is back", CHANNEL)
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while not self._closed and not self.listening:
            try:
                await self._listen()
                log.info("price book: listening on %s again", CHANNEL)
            except (OSError, asyncpg.PostgresError) as exc:
                log.debug("price book: reconnect failed: %r", exc)
                await asyncio.sleep(RECONNECT_S)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, sku: str) -> None:
        if sku == EVERY_SKU:
            self._prices.clear()
        else:
            self._prices.pop(sku, None)
        for changed in self._racing.values():
            changed.add(sku)

    def _forget_all(self) -> None:
        self._prices.clear()
        for changed in self._racing.values():
            changed.add(EVERY_SKU)

    async def lookup(self, skus: Sequence[str]) -> dict[str, Price]:
        """The price of each known, not deleted sku among ``skus``; unknown ones are absent."""
        listening = self.listening
        found = {sku: self._prices[sku] for sku in skus if sku in self._prices} if listening else {}
        missing = [sku for sku in skus if sku not in found]
        if not missing:
            return found
        token, changed = object(), set()
        self._racing[token] = changed
        try:
            # A deleted product keeps its row (deleted_at set) and is unknown here.
            rows = await self.pool.fetch("SELECT sku, price_minor, currency, active FROM products "
                                         "WHERE sku = ANY($1::text[]) AND deleted_at IS NULL", missing)
        except asyncpg.UndefinedTableError:
            raise CatalogUnavailable("the product catalog is not available (no products table); "
                                     "run `shopflow db migrate`") from None
        finally:
            del self._racing[token]
        read = {r["sku"]: Price(int(r["price_minor"]), r["currency"], r["active"]) for r in rows}
        if listening and self.listening and EVERY_SKU not in changed:
            if len(self._prices) + len(read) > MAX_ENTRIES:
                self._prices.clear()
            self._prices.update((sku, price) for sku, price in read.items() if sku not in changed)
        return found | read
