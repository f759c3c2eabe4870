"""What the console's pages share, opened once by the app's lifespan: ``Console`` and ``ConsoleDep``.

A PostgreSQL pool (users, roles, the audit log, the read models), a Redis client (sessions, the
sign-in limit), Prometheus, the schema registry's codec (taps, dead letters), the lag engine and the
stack's servers as last read (``console.servers``).
Pages take ``ConsoleDep`` and use what they need; nothing is opened per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from redis.asyncio import Redis

from shopflow.api.ratelimit import FixedWindowLimiter
from shopflow.console.prometheus import Prometheus
from shopflow.console.servers import ServerStatus
from shopflow.console.sessions import SessionStore
from shopflow.db import create_pool, migrate
from shopflow.lag import LagMonitor, LagReport
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings
from shopflow.taps.reader import Masker, default_masker


@dataclass
class LagSampler:
    """The one lag engine (``shopflow.lag``), sampled on demand off the event loop, one sample at a time
    (``LagMonitor`` is not thread-safe); its windows fill as pages ask, the monitor's are in Prometheus."""

    settings: Settings
    _monitor: LagMonitor | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def sample(self) -> LagReport:
        async with self._lock:
            if self._monitor is None:
                self._monitor = LagMonitor(self.settings, client_id="shopflow-ops-lag")
            return await asyncio.to_thread(self._monitor.sample)

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.close()


@dataclass
class Console:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    sessions: SessionStore
    login_limit: FixedWindowLimiter
    prometheus: Prometheus
    codec: AvroCodec
    lag: LagSampler
    servers: ServerStatus

    @functools.cached_property
    def tap_masker(self) -> Masker:
        """The taps' masker (``shopflow.taps``), made once: it caches its plans and pseudonyms."""
        return default_masker(self.settings, self.codec)


@contextlib.asynccontextmanager
async def open_console(settings: Settings) -> AsyncIterator[Console]:
    async with contextlib.AsyncExitStack() as stack:
        pool = await create_pool(settings, min_size=1, max_size=5, application_name="shopflow-ops")
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            await migrate(conn)  # the roles and audit tables the console signs in with
        redis = Redis.from_url(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        await redis.ping()
        prometheus = Prometheus(settings)
        stack.push_async_callback(prometheus.aclose)
        registry = SchemaRegistry(settings.registry_url)
        stack.callback(registry.close)
        lag = LagSampler(settings)
        stack.callback(lag.close)
        yield Console(
            settings=settings, pool=pool, redis=redis,
            sessions=SessionStore(redis, settings.ops_session_ttl_s),
            login_limit=FixedWindowLimiter("ops-login", settings.ops_login_attempts, settings.rate_limit_window_s),
            prometheus=prometheus, codec=AvroCodec(registry), lag=lag, servers=ServerStatus(settings),
        )


def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]
