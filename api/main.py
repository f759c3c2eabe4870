"""The FastAPI edge: ``create_app(settings)`` builds the app, its lifespan opens what it shares.

The lifespan applies the PostgreSQL migrations, then opens an asyncpg pool, a Redis client, the
codec (with every command schema registered up front, so no request waits on the registry), the
Kafka producer (acks=all, idempotence, murmur2_random), the LISTEN connection that wakes
``?wait=`` readers, the price book (``api.prices``, LISTENing for price changes), the catalog
repository (its own pool, see ``catalog.store.CATALOG_SCHEMA``) and the product search index (created from
``catalog/search_index.json`` if missing); all of it is closed again on shutdown, the producer
flushed first.

    shopflow api            # uvicorn on settings.api_port, OpenAPI at /docs
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from shopflow.api import errors, metrics
from shopflow.api.cart_converters import CART_RECORDS
from shopflow.api.dependencies import Edge, EdgeTopics
from shopflow.api.idempotency import IdempotencyStore
from shopflow.api.middleware import BodySizeLimit
from shopflow.api.orders_store import Markers, OrderNotifications
from shopflow.api.prices import PriceBook
from shopflow.api.producer import CommandProducer
from shopflow.api.ratelimit import FixedWindowLimiter
from shopflow.api.routers import ROUTERS
from shopflow.api.security import TokenService, ensure_jwt_secret
from shopflow.catalog import Catalog
from shopflow.catalog.search import SearchError
from shopflow.catalog.search_index import DEFAULT_INDEX, ProductSearch
from shopflow.catalog.store import CATALOG_SCHEMA, catalog_pool
from shopflow.db import create_pool, migrate
from shopflow.metrics import register_target, share_between_processes
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.inventory import StockAdjusted
from shopflow.schemas.orders import CancelOrder, PlaceOrder
from shopflow.schemas.registry import SchemaRegistry
from shopflow.schemas.users import UserRegistered
from shopflow.settings import Settings, get_settings
from shopflow.topologies.catalog import USERS

DESCRIPTION = """\
ShopFlow's REST command edge. Commands to the streams (orders, cart, stock) are produced to Kafka topics
and answered **202**; where there is something to follow, the `Location` header declared on that response
says where. Catalog writes answer at once (201 with `Location`, or 200). Reads come from read models.
Commands and catalog writes take an `Idempotency-Key` (one key per request, scoped to the caller: see the
header). A method a path does not have is **405**, its `Allow` listing the methods the path has.
Sign in with `POST /v1/auth/login` and send `Authorization: Bearer <access_token>`.
"""

log = logging.getLogger(__name__)

async def open_catalog(settings: Settings, codec: AvroCodec, redis: Redis, topic: str) -> Catalog:
    """The catalog repository on a pool of its own (``catalog_pool``), sharing the edge's Redis client."""
    pool = await catalog_pool(settings, 5)
    try:
        if settings.postgres_schema != CATALOG_SCHEMA:
            async with pool.acquire() as conn:
                await migrate(conn)
        catalog = Catalog(pool, codec, redis, topic=topic)
        await catalog.warm()  # registers the event schemas now, not inside a request's transaction
    except BaseException:
        await pool.close()
        raise
    return catalog


async def open_search(settings: Settings, index: str) -> ProductSearch:
    """The product index, created from its declaration if missing. OpenSearch being down does not
    stop the edge: search routes answer 503 until it is back."""
    search = ProductSearch.connect(settings, index)
    try:
        await asyncio.to_thread(search.ensure_index)
    except SearchError as exc:
        log.warning("search index %s not ensured: %s", index, exc)
    return search


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    topics: EdgeTopics = app.state.topics
    async with AsyncExitStack() as stack:
        pool = await create_pool(settings)
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            await migrate(conn)

        redis = Redis.from_url(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        await redis.ping()

        registry = SchemaRegistry(settings.registry_url)
        stack.callback(registry.close)
        codec = AvroCodec(registry)
        producer = CommandProducer.connect(settings.bootstrap_servers, codec)
        stack.push_async_callback(asyncio.to_thread, producer.close)
        # Every record the edge writes, with its topic.
        produced = ((topics.order_commands, PlaceOrder), (topics.order_commands, CancelOrder),
                    (topics.stock_requests, StockAdjusted), (USERS, UserRegistered),
                    *((topics.cart_commands, record) for record in CART_RECORDS))
        for topic, record in produced:
            await asyncio.to_thread(producer.warm, topic, record)

        notifications = OrderNotifications()
        await notifications.start(settings)
        stack.push_async_callback(notifications.close)

        prices = PriceBook(pool, settings)
        await prices.start()
        stack.push_async_callback(prices.close)

        catalog = await open_catalog(settings, codec, redis, topics.catalog_products.name)
        stack.push_async_callback(catalog.pool.close)  # not catalog.close(): the Redis client is shared
        search = await open_search(settings, app.state.search_index)
        stack.callback(search.close)

        # The workers' table views (carts): short timeouts, a worker that does not answer is a 503.
        workers = httpx.AsyncClient(base_url=settings.worker_url, follow_redirects=True,
                                    timeout=httpx.Timeout(5.0, connect=2.0))
        stack.push_async_callback(workers.aclose)

        window = settings.rate_limit_window_s
        app.state.edge = Edge(
            settings=settings, pool=pool, redis=redis, codec=codec, producer=producer,
            tokens=TokenService.from_settings(settings),
            user_limit=FixedWindowLimiter("user", settings.rate_limit_per_user, window),
            anonymous_limit=FixedWindowLimiter("anonymous", settings.rate_limit_anonymous, window),
            idempotency=IdempotencyStore(redis, settings.idempotency_ttl_s),
            markers=Markers(redis),
            notifications=notifications,
            prices=prices,
            topics=topics,
            catalog=catalog,
            search=search,
            workers=workers,
        )
        yield


def create_app(settings: Settings | None = None, topics: EdgeTopics | None = None,
               search_index: str = DEFAULT_INDEX) -> FastAPI:
    """The edge. ``topics`` defaults to the catalog's (a benchmark passes stand-ins to spare the real ones);
    ``search_index`` is the product index search routes read (tests pass a throwaway one)."""
    settings = ensure_jwt_secret(settings or get_settings())
    TokenService.from_settings(settings)  # refuse a too-short configured secret now, not at first login
    app = FastAPI(
        title="ShopFlow edge", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
        docs_url="/docs", openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.topics = topics or EdgeTopics()
    app.state.search_index = search_index
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(metrics.RequestMetrics)  # added last: outermost, it also counts what BodySizeLimit refuses
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(metrics.router)
    return app


# asyncio's own loop, not uvloop: p99 is the edge's target, and at 16 concurrent orders (benchmarks/edge.py,
# three runs each) asyncio's was 12-19 ms against uvloop's 17-20 ms, for ~4% fewer orders/s. (Before Redis
# calls were auto-pipelined, uvloop's p99 was 65-80 ms, run after run.)
EVENT_LOOP = "asyncio"


def serve(settings: Settings | None = None, host: str | None = None, port: int | None = None,
          workers: int = 1) -> None:
    """``shopflow api``: serve the edge with uvicorn."""
    import uvicorn

    settings = ensure_jwt_secret(settings or get_settings())
    host, port = host or settings.host, port or settings.api_port
    # One target for the whole edge: with several workers, each answers /metrics for all of them. At the
    # address it binds: Prometheus would find nothing at settings.host when `--host` said another.
    register_target(settings, "edge", port, host=host)
    if workers > 1:
        share_between_processes(settings, "edge")
        # Workers import the app by name; the secret is in secrets.env by now, so they all share it.
        uvicorn.run("shopflow.api.main:create_app", factory=True, host=host,
                    port=port, workers=workers, loop=EVENT_LOOP)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, loop=EVENT_LOOP)
