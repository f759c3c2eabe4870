"""The price book on the real PostgreSQL: cached prices are dropped by the catalog's NOTIFY, a read that
raced a change is not cached, and a lost LISTEN connection turns the cache off until it is back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from polling import eventually_async

from shopflow.api.prices import CHANNEL, EVERY_SKU, Price, PriceBook
from shopflow.db import create_pool
from shopflow.listen import Listener
from shopflow.settings import Settings

pytestmark = pytest.mark.integration
POLL_S = 0.02  # the book reacts within milliseconds of a notification: ask often, so each test stays quick


@pytest.fixture
async def book(api_settings: Settings, app) -> AsyncIterator[PriceBook]:  # app: migrations applied
    pool = await create_pool(api_settings, min_size=1, max_size=2)
    prices = PriceBook(pool, api_settings)
    await prices.start()
    yield prices
    await prices.close()
    await pool.close()


@pytest.fixture
def product(api_settings: Settings) -> Callable:
    """``await product(price)``: a new EUR product's sku in the edge's schema."""

    async def make(price: int) -> str:
        sku = f"PB-{uuid.uuid4().hex[:10]}"
        await sql(api_settings, "INSERT INTO products (sku, name, price_minor, currency) VALUES ($1, $1, $2, 'EUR')",
                  sku, price)
        return sku

    return make


async def sql(settings: Settings, statement: str, *args: object) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn, server_settings={"search_path": settings.postgres_schema})
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


def holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """``condition`` as the coroutine function ``eventually_async`` asks."""

    async def check() -> bool:
        return condition()

    return check


async def cached(book: PriceBook, sku: str) -> Price:
    """Look ``sku`` up until the book keeps it: a read that the product's own INSERT notification overtook
    is answered but, rightly, not kept."""

    async def kept() -> bool:
        await book.lookup([sku])
        return sku in book._prices

    if sku not in book._prices:
        await eventually_async(kept, interval_s=POLL_S, what=f"{sku} cached")
    return book._prices[sku]


@asynccontextmanager
async def notifications(settings: Settings) -> AsyncIterator[Callable[[set[str]], Awaitable[None]]]:
    """LISTEN on the products channel; yields ``heard(skus)``, which returns once a notification for each
    of ``skus`` has arrived (woken by each notification, no polling)."""
    seen: set[str] = set()
    arrived = asyncio.Event()

    def on_notify(sku: str) -> None:
        seen.add(sku)
        arrived.set()

    listener = Listener(settings, CHANNEL, on_notify)
    await listener.start()

    async def heard(skus: set[str]) -> None:
        async with asyncio.timeout(10):
            while not skus <= seen:
                arrived.clear()
                await arrived.wait()

    try:
        yield heard
    finally:
        await listener.close()


async def test_a_price_change_reaches_the_next_lookup(book: PriceBook, product, api_settings: Settings):
    sku = await product(1000)
    assert await book.lookup([sku]) == {sku: Price(1000, "EUR", True)}
    assert await cached(book, sku) == Price(1000, "EUR", True)  # served from memory from now on

    await sql(api_settings, "UPDATE products SET price_minor = 1250 WHERE sku = $1", sku)
    await eventually_async(holds(lambda: sku not in book._prices), interval_s=POLL_S,
                           what="the UPDATE's notification dropped the cached price")
    assert await book.lookup([sku]) == {sku: Price(1250, "EUR", True)}


@pytest.mark.parametrize(("change", "expected"), [
    ("UPDATE products SET active = false WHERE sku = $1", {"active": False}),
    ("UPDATE products SET deleted_at = now() WHERE sku = $1", None),
    ("DELETE FROM products WHERE sku = $1", None),
])
async def test_deactivated_or_deleted_products_are_seen_at_once(book: PriceBook, product, api_settings: Settings,
                                                                change: str, expected: dict | None):
    sku = await product(700)
    await cached(book, sku)
    await sql(api_settings, change, sku)
    await eventually_async(holds(lambda: sku not in book._prices), interval_s=POLL_S,
                           what="the change's notification")
    found = await book.lookup([sku])
    assert (found[sku].active is False) if expected else (sku not in found)


async def test_a_notification_during_a_read_keeps_that_sku_out_of_the_cache(book: PriceBook, product,
                                                                            api_settings: Settings):
    async with notifications(api_settings) as heard:
        sku, other = await product(300), await product(400)
        await heard({sku, other})  # the INSERTs' own notifications are behind us

    class RacingPool:
        """The real pool, but one price changes while the rows are on their way back."""

        async def fetch(self, *args: object) -> list:
            rows = await book.pool.fetch(*args)
            racing._on_notify(sku)
            return rows

    racing = PriceBook(RacingPool(), api_settings)  # type: ignore[arg-type]
    await racing.start()
    try:
        found = await racing.lookup([sku, other])
        assert (found[sku].price_minor, found[other].price_minor) == (300, 400)  # both answered ...
        assert racing.listening and sku not in racing._prices  # ... the changed one not remembered,
        assert racing._prices[other] == Price(400, "EUR", True)  # the other one is
    finally:
        await racing.close()


async def test_every_sku_payload_empties_the_book(book: PriceBook, product, api_settings: Settings):
    skus = [await product(100), await product(200)]
    for sku in skus:
        await cached(book, sku)
    assert set(skus) <= book._prices.keys()
    await sql(api_settings, "SELECT pg_notify($1, $2)", CHANNEL, EVERY_SKU)
    await eventually_async(holds(lambda: not book._prices), interval_s=POLL_S,
                           what="the '*' notification emptied the book")


async def test_unknown_skus_are_not_cached(book: PriceBook):
    sku = f"PB-missing-{uuid.uuid4().hex[:8]}"
    assert await book.lookup([sku]) == {}
    assert sku not in book._prices


async def test_a_lost_listener_turns_the_cache_off_until_it_is_back(book: PriceBook, product,
                                                                     api_settings: Settings):
    sku = await product(900)
    await cached(book, sku)
    assert book.listening and sku in book._prices
    old = book.listener._conn  # the LISTEN connection, to be cut from the server's side
    assert old is not None
    await sql(api_settings, "SELECT pg_terminate_backend($1)", old.get_server_pid())
    await eventually_async(holds(lambda: not book._prices or book.listener._conn is not old), interval_s=POLL_S,
                           what="the book noticed its listener died")

    # Changes made meanwhile are not heard, so the book starts empty and reads PostgreSQL.
    await sql(api_settings, "UPDATE products SET price_minor = 950 WHERE sku = $1", sku)
    assert (await book.lookup([sku]))[sku].price_minor == 950
    await eventually_async(holds(lambda: book.listening and book.listener._conn is not old), interval_s=POLL_S,
                           what="the book listening again")
    assert (await cached(book, sku)).price_minor == 950  # cached again once it listens
