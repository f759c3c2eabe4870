"""What the order routes read and remember: catalog prices, the orders read model, accepted-order markers.

- Prices come from the catalog's ``products`` table (0002_catalog.sql: price_minor, currency, active,
  deleted_at) through the price book (``api.prices``), never from the client.
- The read model is ``orders_view``, written by the order projection from the ``orders`` topic.
- Read-your-writes: when the edge accepts a command it leaves a marker in Redis (the order as
  accepted, its owner, and the least status the saga must reach to reflect the command: PENDING after
  a place, CANCELLED/REFUNDED after a cancel; the statuses and their ranks are ``topologies.orders``'s).
  ``GET ?wait=`` waits, woken by the projection's NOTIFY (read again whenever notifications may have been
  missed, and polled as a fallback), until the read model has reached that status or a final one, or
  the bound passes; an order the saga has not reported on yet is shown as ACCEPTED.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from redis.asyncio import Redis

from shopflow.api.converters import PricedLine
from shopflow.api.idempotency import RedisWrite
from shopflow.api.schemas import OrderLineIn, OrderPublic
from shopflow.catalog.errors import CatalogUnavailable  # noqa: F401 (the routers import it from here)
from shopflow.catalog.reader import CatalogReader, NotSellable, PriceSource, known, price_order
from shopflow.listen import Listener
from shopflow.settings import Settings
from shopflow.topologies.orders import FINAL_ORDER_STATUSES, ORDERS_VIEW_CHANNEL, RANK_CANCELLED, RANK_PLACED

MARKER_PREFIX = "shopflow:orders:accepted"
EXPECT_PREFIX = "shopflow:orders:expect"
MARKER_TTL_S = 24 * 3600
# Fallback re-read interval while waiting, in case a notification was missed (listener reconnecting).
POLL_S = 0.5

_VIEW_COLUMNS = ("order_id, user_id, status, status_rank, lines, total_minor, currency, reason, detail, "
                 "created_at, updated_at")


# -- catalog prices ---------------------------------------------------------------------------------------


# The lines cannot be priced; the message names the skus and what is wrong with them.
PricingError = NotSellable


async def price_lines(prices: PriceSource, lines: Sequence[OrderLineIn]) -> tuple[list[PricedLine], str]:
    """Each line with its catalog unit price, and the order's currency (the catalog's rule)."""
    found, currency = await price_order(prices, [line.sku for line in lines])
    priced = [PricedLine(line.sku, line.quantity, found[line.sku].price_minor, found[line.sku].currency)
              for line in lines]
    return priced, currency


async def sku_exists(conn: asyncpg.Connection, sku: str) -> bool:
    return await known(CatalogReader(conn), sku)


# -- the read model -----------------------------------------------------------------------------------------


async def fetch_order(conn: asyncpg.Connection | asyncpg.Pool, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_VIEW_COLUMNS} FROM orders_view WHERE order_id = $1", order_id)


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the last order's (created_at, order_id). Opaque to clients (base64url JSON)."""

    created_at: datetime
    order_id: str

    def encode(self) -> str:
        raw = json.dumps({"c": self.created_at.isoformat(), "o": self.order_id}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            created_at = datetime.fromisoformat(raw["c"])
            if created_at.tzinfo is None or not isinstance(raw["o"], str):
                raise ValueError
            return cls(created_at, raw["o"])
        except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
            raise BadCursor("the cursor is not one this API issued; pass next_cursor from the previous page") from None


async def list_orders(conn: asyncpg.Connection | asyncpg.Pool, *, user_id: str | None, cursor: Cursor | None,
                      limit: int) -> tuple[list[asyncpg.Record], Cursor | None]:
    """A page of orders, newest first (keyset pagination on (created_at, order_id)); one extra row says if more."""
    where: list[str] = []
    args: list[object] = []
    if user_id is not None:
        args.append(user_id)
        where.append(f"user_id = ${len(args)}")
    if cursor is not None:
        args += [cursor.created_at, cursor.order_id]
        where.append(f"(created_at, order_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    sql = (f"SELECT {_VIEW_COLUMNS} FROM orders_view {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY created_at DESC, order_id DESC LIMIT ${len(args)}")
    rows = await conn.fetch(sql, *args)
    if len(rows) <= limit:
        return list(rows), None
    last = rows[limit - 1]
    return list(rows[:limit]), Cursor(last["created_at"], last["order_id"])


def reached(row: asyncpg.Record | None, min_rank: int) -> bool:
    """The read model shows the command's effect (status rank reached) or a final status."""
    return row is not None and (row["status_rank"] >= min_rank or row["status"] in FINAL_ORDER_STATUSES)


# -- markers of accepted commands (Redis) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Marker:
    user_id: str
    min_rank: int
    accepted: OrderPublic | None  # the order as accepted (only after a place)


class Markers:
    """Two plain keys per order: ``accepted:<id>`` holds the order as accepted (JSON, it names its owner),
    ``expect:<id>`` holds ``<owner> <least status rank>`` once a command raised the bar beyond "placed" (a
    cancel). The order routes hand them to the idempotency store (``placed_write``, ``cancel_write``), which
    writes them in the round trip that stores the command's response."""

    def __init__(self, redis: Redis):
        self.redis = redis

    @staticmethod
    def keys(order_id: str) -> tuple[str, str]:
        return f"{MARKER_PREFIX}:{order_id}", f"{EXPECT_PREFIX}:{order_id}"

    def placed_write(self, order: OrderPublic) -> RedisWrite:
        return RedisWrite(self.keys(order.order_id)[0], order.model_dump_json(), MARKER_TTL_S)

    def cancel_write(self, order_id: str, user_id: str) -> RedisWrite:
        return RedisWrite(self.keys(order_id)[1], f"{user_id} {RANK_CANCELLED}", MARKER_TTL_S)

    async def get(self, order_id: str) -> Marker | None:
        accepted_raw, expect_raw = await self.redis.mget(self.keys(order_id))
        accepted = OrderPublic.model_validate_json(accepted_raw) if accepted_raw else None
        if expect_raw:
            expect = expect_raw.decode() if isinstance(expect_raw, bytes) else expect_raw
            owner, rank = expect.rsplit(" ", 1)
            return Marker(owner, int(rank), accepted)
        return Marker(accepted.user_id, RANK_PLACED, accepted) if accepted else None


# -- waiting for the projection -----------------------------------------------------------------------------


class OrderNotifications:
    """One LISTEN connection per edge process; waiters for an order are woken by the projection's NOTIFY,
    and every waiter when notifications may have been missed (the connection lost or back)."""

    def __init__(self) -> None:
        self._listener: Listener | None = None
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    async def start(self, settings: Settings) -> None:
        self._listener = Listener(settings, ORDERS_VIEW_CHANNEL, self._on_notify, on_gap=self._wake_all)
        await self._listener.start()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    def _on_notify(self, order_id: str) -> None:
        for event in self._waiters.get(order_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    @contextmanager
    def subscribe(self, order_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters[order_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters[order_id]
            waiters.discard(event)
            if not waiters:
                del self._waiters[order_id]


async def wait_for_order(pool: asyncpg.Pool, notifications: OrderNotifications, order_id: str, min_rank: int,
                         timeout_s: float) -> asyncpg.Record | None:
    """The order's row once it has reached ``min_rank`` (or a final status), or as it is when time is up."""
    deadline = time.monotonic() + timeout_s
    with notifications.subscribe(order_id) as changed:
        while True:
            changed.clear()  # before the read: a change committed after it wakes the wait below
            row = await fetch_order(pool, order_id)
            remaining = deadline - time.monotonic()
            if reached(row, min_rank) or remaining <= 0:
                return row
            with contextlib.suppress(TimeoutError):  # a poll: read again
                await asyncio.wait_for(changed.wait(), min(remaining, POLL_S))
