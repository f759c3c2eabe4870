"""Read-model freshness, measured continuously: how long a change takes from its commit to being readable.

Two paths, each timed on real traffic through the real pipeline, never estimated from lag:

- ``catalog_to_search``: ``CatalogHeartbeat`` updates one product (``HEARTBEAT_SKU``) through the
  catalog's normal write path (its row and its outbox event in one transaction), then searches the
  index until that version is found: PostgreSQL commit -> outbox -> Debezium -> topic -> indexer ->
  refreshed segment. The product is inactive (never sold, never suggested) and every customer search
  excludes its sku (``catalog.search.build_request``); ``GET /v1/products/SHOPFLOW-HEARTBEAT`` still
  shows it, as any product.
- ``command_to_orders_view``: ``OrdersViewFreshness`` times the orders the edge (or anyone) places, not
  orders of its own: from a PlaceOrder's ``occurred_at`` (the edge stamps it when it accepts the
  command) to the ``applied_at`` of its OrderPlaced in ``orders_view_events`` (the projection's
  transaction that made the row), looked up by that event's id (the table's primary key).

``Freshness`` (a collector) exports both as a histogram and as a gauge of the last measurement, which
grows with the age of the oldest change still not visible: a stopped indexer shows as a rising gauge,
not as silence (a heartbeat that gives up leaves its change awaited, the next one does not reset it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shopflow.catalog import Catalog, ProductInput
from shopflow.catalog.errors import NotFound
from shopflow.catalog.search import HEARTBEAT_SKU, IS_PRODUCT
from shopflow.catalog.search_index import DEFAULT_INDEX
from shopflow.metrics import LATENCY_BUCKETS

CATALOG_TO_SEARCH = "catalog_to_search"
COMMAND_TO_ORDERS_VIEW = "command_to_orders_view"
PATHS = (CATALOG_TO_SEARCH, COMMAND_TO_ORDERS_VIEW)
SEARCH_POLL_S = 0.02  # the resolution of a quick catalog measurement: a search every 20 ms at first
SEARCH_POLL_MAX_S = 1.0  # a change long awaited (an outage) costs the index a search a second, not fifty


def search_pause_s(waited_s: float) -> float:
    """The pause before the next search for a change awaited ``waited_s``: a tenth of the wait (the error
    stays within 10% of the measurement), between ``SEARCH_POLL_S`` and ``SEARCH_POLL_MAX_S``."""
    return min(SEARCH_POLL_MAX_S, max(SEARCH_POLL_S, waited_s / 10))


class Freshness(Collector):
    """Measurements per path: a histogram, and the last one (or the age of the change still awaited)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # wall time in seconds; a test gives a simulated one
        self.histogram = Histogram("shopflow_freshness_seconds", "Commit -> readable time of a change in a read "
                                   "model, by path (catalog_to_search, command_to_orders_view).", ["path"],
                                   buckets=LATENCY_BUCKETS + (30.0, 60.0), registry=None)
        self._last: dict[str, float] = {}
        self._awaiting: dict[str, float] = {}  # path -> wall time (s) of the oldest change not readable yet
        self._lock = threading.Lock()
        for path in PATHS:
            self.histogram.labels(path)

    def measured(self, path: str, seconds: float) -> None:
        self.histogram.labels(path).observe(seconds)
        with self._lock:
            self._last[path] = seconds

    def awaiting(self, path: str, since_s: float | None, *, keep_older: bool = False) -> None:
        """The commit time of the oldest change not readable yet on ``path`` (None: all are readable).
        ``keep_older``: a change already awaited since earlier stays the one measured."""
        with self._lock:
            if since_s is None:
                self._awaiting.pop(path, None)
            elif keep_older:
                self._awaiting.setdefault(path, since_s)
            else:
                self._awaiting[path] = since_s

    def last(self, path: str, now_s: float | None = None) -> float | None:
        """The last measurement, or how long the awaited change has been waiting when that is longer."""
        with self._lock:
            last, since = self._last.get(path), self._awaiting.get(path)
        waited = (now_s if now_s is not None else self.clock()) - since if since is not None else None
        values = [v for v in (last, waited) if v is not None]
        return max(values) if values else None

    def collect(self) -> Iterator[Metric]:
        yield from self.histogram.collect()
        gauge = GaugeMetricFamily("shopflow_freshness_last_seconds", "The last commit -> readable measurement "
                                  "by path, or the age of the change still not readable when that is longer.",
                                  labels=["path"])
        for path in PATHS:
            value = self.last(path)
            if value is not None:
                gauge.add_metric([path], value)
        yield gauge


class CatalogHeartbeat:
    """One heartbeat product, written through ``catalog`` and searched for in ``index``."""

    def __init__(self, catalog: Catalog, search_url: str, freshness: Freshness, *, index: str = DEFAULT_INDEX,
                 sku: str = HEARTBEAT_SKU, give_up_s: float = 600.0,
                 pause: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.catalog, self.freshness, self.index, self.sku = catalog, freshness, index, sku
        self.give_up_s = give_up_s
        self.clock, self.pause = freshness.clock, pause  # one clock for the measurement and its gauge
        self.http = httpx.AsyncClient(base_url=search_url, timeout=10)

    async def close(self) -> None:
        await self.http.aclose()

    async def beat(self) -> float:
        """Write the next version, wait until a search finds it; the seconds from commit to searchable.

        TimeoutError after ``give_up_s``: the next beat writes a newer version and waits for that, and until
        one is found the gauge keeps counting from the oldest version not found (a dead pipeline shows as
        a freshness that keeps rising, not as the last good measurement)."""
        version = await self._write()
        committed = self.clock()  # the write returned: its transaction is committed
        self.freshness.awaiting(CATALOG_TO_SEARCH, committed, keep_older=True)
        while not await self._searchable(version):
            waited = self.clock() - committed
            if waited > self.give_up_s:
                raise TimeoutError(f"heartbeat {self.sku} v{version} not searchable in {self.index} after "
                                   f"{self.give_up_s:.0f}s: is `shopflow indexer` running, and the connector? "
                                   "(`shopflow connectors status`)")
            await self.pause(search_pause_s(waited))
        self.freshness.awaiting(CATALOG_TO_SEARCH, None)  # this version is found: every older one is too
        seconds = self.clock() - committed
        self.freshness.measured(CATALOG_TO_SEARCH, seconds)
        return seconds

    async def _write(self) -> int:
        note = f"Freshness probe of the ShopFlow monitor, beat at {time.time():.3f}; not for sale."
        try:
            return (await self.catalog.update_product(self.sku, {"description": note})).version
        except NotFound:
            product = ProductInput(sku=self.sku, name="ShopFlow heartbeat", description=note, price_minor=0,
                                   currency="EUR", active=False)
            return (await self.catalog.create_product(product)).version

    async def _searchable(self, version: int) -> bool:
        body = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": [
            IS_PRODUCT, {"term": {"sku": self.sku}}, {"range": {"version": {"gte": version}}}]}}}
        r = await self.http.post(f"/{self.index}/_search", json=body)
        r.raise_for_status()
        return bool(r.json()["hits"]["total"]["value"])


@dataclass
class _Placed:
    command_s: float  # the PlaceOrder's occurred_at
    event_id: str | None = None  # its OrderPlaced, once read
    seen_s: float = 0.0  # when the monitor read the command


class OrdersViewFreshness:
    """Command -> orders_view for the orders placed while the monitor runs (at most ``max_pending`` at once:
    beyond that, new orders are not timed until some are)."""

    def __init__(self, freshness: Freshness, *, max_pending: int = 10_000, forget_s: float = 600.0):
        self.freshness, self.max_pending, self.forget_s = freshness, max_pending, forget_s
        self._pending: dict[str, _Placed] = {}
        self._lock = threading.Lock()

    def command(self, order_id: str, occurred_at_ms: int, now_s: float) -> None:
        with self._lock:
            if order_id not in self._pending and len(self._pending) < self.max_pending:
                self._pending[order_id] = _Placed(occurred_at_ms / 1000, seen_s=now_s)

    def placed(self, order_id: str, event_id: str) -> None:
        with self._lock:
            if order_id in self._pending:
                self._pending[order_id].event_id = event_id

    async def check(self, conn: asyncpg.Connection, now_s: float | None = None) -> int:
        """Measure the orders whose row has appeared; how many were measured."""
        now_s = now_s or time.time()
        with self._lock:
            # A command that made no OrderPlaced (an invalid order, a retried id) is not an order to time.
            for order_id in [o for o, p in self._pending.items()
                             if now_s - p.seen_s > (self.forget_s if p.event_id else 60.0)]:
                del self._pending[order_id]
            asked = {p.event_id: o for o, p in self._pending.items() if p.event_id}
        rows = await conn.fetch("SELECT event_id::text AS event_id, extract(epoch FROM applied_at) AS applied "
                                "FROM orders_view_events WHERE event_id = ANY($1::uuid[])", list(asked)) \
            if asked else []
        with self._lock:
            for row in rows:
                placed = self._pending.pop(asked[row["event_id"]], None)
                if placed is not None:
                    self.freshness.measured(COMMAND_TO_ORDERS_VIEW, max(0.0, float(row["applied"]) - placed.command_s))
            waiting = [p.command_s for p in self._pending.values() if p.event_id]
        self.freshness.awaiting(COMMAND_TO_ORDERS_VIEW, min(waiting) if waiting else None)
        return len(rows)
