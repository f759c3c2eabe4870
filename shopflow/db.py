"""PostgreSQL access shared by the edge, the read-model feeders, the catalog and the tools: the one
place connections and pools are set up, and the migrations.

Every connection works in one schema (``search_path``, by default ``settings.postgres_schema``, so
tests can run against a throwaway schema of the real server) and, unless told otherwise, decodes
``jsonb`` to Python values. Statements are always parameterised ($1, $2, ...); no value is ever
spliced into SQL text.

Migrations are the numbered ``shopflow/migrations/*.sql`` files, each applied once, in order,
in its own transaction, and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from shopflow.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
APPLICATION_NAME = "shopflow"


def _server_settings(settings: Settings, schema: str | None, application_name: str) -> dict[str, str]:
    return {"search_path": schema or settings.postgres_schema, "application_name": application_name}


async def _decode_json(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(settings: Settings, *, schema: str | None = None,
                  application_name: str = APPLICATION_NAME) -> asyncpg.Connection:
    """One connection of its own (LISTEN, a consumer's writes, a tool), ``jsonb`` decoded."""
    conn = await asyncpg.connect(settings.postgres_dsn,
                                 server_settings=_server_settings(settings, schema, application_name))
    await _decode_json(conn)
    return conn


async def _release(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset (UNLISTEN, RESET ALL, unlock all, ...) is a round trip on every release;
    # the edge's requests leave nothing behind but, if one was cancelled mid-way, an open transaction.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(settings: Settings, *, min_size: int = 2, max_size: int = 10, schema: str | None = None,
                      application_name: str = APPLICATION_NAME, decode_json: bool = True) -> asyncpg.Pool:
    """A pool for request handlers: sessions hold no state (LISTEN uses a connection of its own).

    ``decode_json=False`` leaves ``jsonb`` as text, for code that sends and reads it as text (the catalog)."""
    return await asyncpg.create_pool(settings.postgres_dsn, min_size=min_size, max_size=max_size,
                                     server_settings=_server_settings(settings, schema, application_name),
                                     init=_decode_json if decode_json else None, reset=_release)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied; return their names."""
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                       "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    # One migrator at a time, whoever else starts alongside (tests, workers, the edge).
    await conn.execute("SELECT pg_advisory_lock(hashtext('shopflow.migrations'))")
    try:
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        applied = []
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied.append(path.name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext('shopflow.migrations'))")


async def migrate_database(settings: Settings, *, schema: str | None = None) -> list[str]:
    """``migrate`` on a connection of its own (a tool, the demo, a test's setup), closed after."""
    conn = await connect(settings, schema=schema)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
