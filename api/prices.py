"""The catalog's prices as the order routes charge them: read from PostgreSQL by the catalog's reader
(``shopflow.catalog.reader``), kept per edge process until PostgreSQL says they changed.

Every committed change of a product row NOTIFYs ``shopflow_products`` with its sku (migration
0006_products_notify.sql); the price book LISTENs (``shopflow.listen``) and drops that sku.
So a price is never served after its change is known here, and a change is known here as soon as
its transaction commits (the notification's delivery, a millisecond on one host): an order placed in
that window is priced as if it had come just before the change. What is not cached: unknown skus
(each miss asks PostgreSQL again). While the LISTEN connection is down, nothing is served from memory
(every lookup reads PostgreSQL) and the listener reconnects in the background; on reconnecting the
book starts empty, since changes made meanwhile were not heard.

A read that raced a change cannot put the old price back: a sku notified while the read was in
flight is answered from that read but not stored (each read in flight collects the skus notified
meanwhile; changes to other skus do not keep it from caching).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shopflow.catalog.errors import CatalogUnavailable
from shopflow.catalog.reader import Price, read_prices
from shopflow.listen import Listener
from shopflow.settings import Settings

__all__ = ["CHANNEL", "EVERY_SKU", "MAX_ENTRIES", "CatalogUnavailable", "Price", "PriceBook"]

CHANNEL = "shopflow_products"
EVERY_SKU = "*"  # the payload after a TRUNCATE
# A bound on memory for very large catalogs: past it, the book starts again from empty.
MAX_ENTRIES = 100_000


class PriceBook:
    """A ``shopflow.catalog.reader.PriceSource`` that remembers what it read until it changes."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool = pool
        self._prices: dict[str, Price] = {}
        # Per read in flight (keyed by a token of its own): the skus notified while it runs ('*': all).
        self._racing: dict[object, set[str]] = {}
        self.listener = Listener(settings, CHANNEL, self._on_notify, on_gap=self._forget_all)

    @property
    def listening(self) -> bool:
        return self.listener.listening

    async def start(self) -> None:
        await self.listener.start()

    async def close(self) -> None:
        await self.listener.close()

    def _on_notify(self, sku: str) -> None:
        if sku == EVERY_SKU:
            self._prices.clear()
        else:
            self._prices.pop(sku, None)
        for changed in self._racing.values():
            changed.add(sku)

    def _forget_all(self) -> None:
        """Whatever changed while nobody listened is unknown: nothing read before may be kept."""
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
        token, changed = object(), set[str]()
        self._racing[token] = changed
        try:
            read = await read_prices(self.pool, missing)
        finally:
            del self._racing[token]
        if listening and self.listening and EVERY_SKU not in changed:
            if len(self._prices) + len(read) > MAX_ENTRIES:
                self._prices.clear()
            self._prices.update((sku, price) for sku, price in read.items() if sku not in changed)
        return found | read
