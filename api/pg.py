"""PostgreSQL connections for the edge and the order projection: one place that sets them up.

Every connection works in ``settings.postgres_schema`` (``search_path``), so tests can run the edge
against a throwaway schema of the real server, and decodes ``jsonb`` to Python values.
Statements are always parameterised ($1, $2, ...); no value is ever spliced into SQL text.
"""

from __future__ import annotations

import json

import asyncpg

from shopflow.settings import Settings


def _server_settings(settings: Settings) -> dict[str, str]:
    return {"search_path": settings.postgres_schema, "application_name": "shopflow"}


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(settings: Settings) -> asyncpg.Connection:
    conn = await asyncpg.connect(settings.postgres_dsn, server_settings=_server_settings(settings))
    await _init(conn)
    return conn


async def _release(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset (UNLISTEN, RESET ALL, unlock all, ...) is a round trip on every release;
    # the edge's requests leave nothing behind but, if one was cancelled mid-way, an open transaction.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(settings: Settings, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """A pool for request handlers: sessions hold no state (LISTEN uses its own connection)."""
    return await asyncpg.create_pool(settings.postgres_dsn, min_size=min_size, max_size=max_size,
                                     server_settings=_server_settings(settings), init=_init, reset=_release)
