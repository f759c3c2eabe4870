"""PostgreSQL access shared by the edge, the catalog and the tools: a pool and the migrations.

Migrations are the numbered ``shopflow/migrations/*.sql`` files, each applied once, in order,
in its own transaction, and recorded in ``schema_migrations``.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied; return their names."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
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
