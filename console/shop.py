"""The shop admin page's data, each number from the read model that already holds it (no new store):

- orders and revenue per hour and per day, and the top skus: the orders read model (``orders_view``,
  PostgreSQL, parameterised SQL); revenue is the total of the orders CONFIRMED (a refunded order is not
  revenue), per currency, bucketed by the time the order was placed (UTC);
- carts turned into orders: the edge's accepted checkouts (``shopflow_http_requests_total`` of
  ``POST /v1/cart/checkout`` answered 202) against the carts that expired (``shopflow_events_out_total``
  on cart-events, the worker's CartExpired), from Prometheus; a cart's state lives in the carts agent's
  table, which has no query over all carts;
- stock levels: the ``available`` units (on hand minus reserved) of the search index's stock docs, which
  the indexer feeds from the inventory table's changelog (``catalog.search_index``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from opensearchpy.exceptions import ConnectionError as SearchConnectionError
from opensearchpy.exceptions import TransportError
from pydantic import BaseModel

from shopflow.catalog.search import HEARTBEAT_SKU
from shopflow.catalog.search_index import DEFAULT_INDEX, ProductSearch
from shopflow.console.prometheus import Prometheus, PrometheusUnavailable
from shopflow.settings import Settings
from shopflow.topologies.saga import CANCELLED, CONFIRMED, REFUNDED

Step = Literal["hour", "day"]
STEPS: Mapping[Step, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
CHECKOUT_ROUTE = "/v1/cart/checkout"  # api/routers/carts.py
CART_EVENTS_TOPIC = "cart-events"

# One row per (bucket, currency); count(*) of every order placed in the bucket, the statuses it has now.
# Sums of bigint are numeric in PostgreSQL: cast back, the page's amounts are integers of minor units.
_PER_BUCKET = """
SELECT date_trunc($1, created_at AT TIME ZONE 'UTC') AS bucket, currency,
       count(*) AS orders,
       count(*) FILTER (WHERE status = $3) AS confirmed,
       count(*) FILTER (WHERE status = $4) AS cancelled,
       count(*) FILTER (WHERE status = $5) AS refunded,
       coalesce(sum(total_minor) FILTER (WHERE status = $3), 0)::bigint AS revenue_minor
FROM orders_view
WHERE created_at >= $2
GROUP BY bucket, currency
ORDER BY bucket
"""
_TOP_SKUS = """
SELECT line->>'sku' AS sku, line->'unit_price'->>'currency' AS currency,
       sum((line->>'quantity')::bigint)::bigint AS units,
       sum((line->>'quantity')::bigint * (line->'unit_price'->>'amount_minor')::bigint)::bigint AS revenue_minor,
       count(DISTINCT order_id) AS orders
FROM orders_view, jsonb_array_elements(lines) AS line
WHERE status = $1 AND created_at >= $2
GROUP BY 1, 2
ORDER BY units DESC, sku
LIMIT $3
"""


class Bucket(BaseModel):
    start: datetime  # UTC
    orders: int = 0
    confirmed: int = 0
    cancelled: int = 0
    refunded: int = 0
    revenue_minor: dict[str, int] = {}  # currency -> confirmed orders' totals


class TopSku(BaseModel):
    sku: str
    units: int
    orders: int
    revenue_minor: int
    currency: str | None


class Checkouts(BaseModel):
    window: str
    checked_out: float | None  # carts turned into orders
    expired: float | None  # carts left idle until they expired
    rate: float | None  # checked_out / (checked_out + expired)


class LowStock(BaseModel):
    sku: str
    name: str | None  # None: the sku has stock but no product in the index
    available: int


class Stock(BaseModel):
    below: int  # the threshold
    skus_below: int  # all of them (``low`` lists the first ones)
    skus_tracked: int
    low: list[LowStock]


class ShopView(BaseModel):
    hourly: list[Bucket]
    daily: list[Bucket]
    top_skus: list[TopSku]
    top_skus_days: int
    checkouts: Checkouts | None
    stock: Stock | None
    notes: list[str]


def truncate(at: datetime, step: Step) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0) if step == "hour" else at.replace(
        hour=0, minute=0, second=0, microsecond=0)


def buckets_of(rows: Iterable[Mapping[str, Any]], step: Step, first: datetime, last: datetime) -> list[Bucket]:
    """Rows of ``_PER_BUCKET`` as one bucket per step from ``first`` to ``last`` (empty ones included)."""
    buckets: dict[datetime, Bucket] = {}
    at = truncate(first, step)
    while at <= last:
        buckets[at] = Bucket(start=at)
        at += STEPS[step]
    for row in rows:
        start = row["bucket"].replace(tzinfo=UTC)
        bucket = buckets.setdefault(start, Bucket(start=start))
        bucket.orders += row["orders"]
        bucket.confirmed += row["confirmed"]
        bucket.cancelled += row["cancelled"]
        bucket.refunded += row["refunded"]
        if row["revenue_minor"] and row["currency"]:
            bucket.revenue_minor[row["currency"]] = bucket.revenue_minor.get(row["currency"], 0) + row["revenue_minor"]
    return [buckets[k] for k in sorted(buckets)]


async def orders_per(conn: asyncpg.Connection, step: Step, count: int, now: datetime) -> list[Bucket]:
    """The last ``count`` hours or days, the current one included."""
    first = truncate(now, step) - STEPS[step] * (count - 1)
    rows = await conn.fetch(_PER_BUCKET, step, first, CONFIRMED, CANCELLED, REFUNDED)
    return buckets_of(rows, step, first, now)


async def top_skus(conn: asyncpg.Connection, days: int, limit: int, now: datetime) -> list[TopSku]:
    rows = await conn.fetch(_TOP_SKUS, CONFIRMED, now - timedelta(days=days), limit)
    return [TopSku(sku=r["sku"], units=r["units"], orders=r["orders"], revenue_minor=r["revenue_minor"],
                   currency=r["currency"]) for r in rows]


def _count(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value)


async def checkouts(prometheus: Prometheus, window: str = "1d") -> Checkouts:
    checked_out = _count(await prometheus.value(
        f'sum(increase(shopflow_http_requests_total{{route="{CHECKOUT_ROUTE}", method="POST", status="202"}}'
        f"[{window}]))"))
    expired = _count(await prometheus.value(
        f'sum(increase(shopflow_events_out_total{{topic="{CART_EVENTS_TOPIC}"}}[{window}]))'))
    ended = (checked_out or 0) + (expired or 0)
    return Checkouts(window=window, checked_out=checked_out, expired=expired,
                     rate=(checked_out or 0) / ended if ended else None)


def low_stock_query(below: int, limit: int) -> dict[str, Any]:
    return {
        "size": limit, "track_total_hits": True, "_source": ["available"],
        "query": {"bool": {"filter": [{"term": {"relation": "stock"}}, {"range": {"available": {"lt": below}}}],
                           "must_not": [{"term": {"_routing": HEARTBEAT_SKU}}]}},
        "sort": [{"available": "asc"}, {"_id": "asc"}],
    }


def low_stock_of(hits: Sequence[Mapping[str, Any]], names: Mapping[str, str | None]) -> list[LowStock]:
    return [LowStock(sku=h["_routing"], name=names.get(h["_routing"]), available=h["_source"]["available"])
            for h in hits]


def stock_levels(settings: Settings, below: int, limit: int, index: str = DEFAULT_INDEX) -> Stock:
    """Blocking (the index's client is synchronous): call it off the event loop."""
    search = ProductSearch.connect(settings, index)
    try:
        found = search.client.search(index=search.index, body=low_stock_query(below, limit))
        tracked = search.client.count(index=search.index, body={"query": {"term": {"relation": "stock"}}})["count"]
        hits = found["hits"]["hits"]
        names: dict[str, str | None] = {}
        if hits:
            docs = search.client.mget(index=search.index, body={"ids": [h["_routing"] for h in hits]},
                                      _source=["name"])["docs"]
            names = {d["_id"]: d["_source"].get("name") for d in docs if d.get("found")}
        return Stock(below=below, skus_below=found["hits"]["total"]["value"], skus_tracked=tracked,
                     low=low_stock_of(hits, names))
    finally:
        search.close()


STOCK_ERRORS = (TransportError, SearchConnectionError)
PROMETHEUS_ERRORS = (PrometheusUnavailable,)
