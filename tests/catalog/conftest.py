"""Fixtures of the catalog tests: the migrated database and the outbox connector, a catalog writing
to a throwaway topic (the outbox routes by aggregatetype, so the real connector carries it there),
a throwaway index, and the search indexer running over that topic in a background thread."""

from __future__ import annotations

import threading

import pytest
from catalog_helpers import RunningIndexer, unique, wait_until

from shopflow.streams.client import iter_topic


@pytest.fixture(scope="session")
async def catalog_db(stack):
    import asyncpg

    from shopflow.db import migrate

    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return stack


@pytest.fixture(scope="session")
def connect_client(stack, catalog_db):
    """The outbox connector applied, after the migrations (its publication needs the outbox table)."""
    from shopflow.connectors.apply import CONNECTORS_DIR, ConnectClient, load

    client = ConnectClient(stack.connect_url)
    client.apply(load(CONNECTORS_DIR / "catalog-outbox.json"))
    yield client
    client.close()


@pytest.fixture(scope="session")
async def catalog_topic(stack, catalog_db, topic_factory, admin):
    """A fresh topic standing for catalog.products, with its dead-letter topic (no auto-creation here)."""
    import asyncio

    from confluent_kafka.admin import NewTopic

    topic = topic_factory("catalog", partitions=3)
    dlq = f"{topic}.dlq"
    admin.create_topics([NewTopic(dlq, 1, 1)])[dlq].result(timeout=30)
    yield topic
    # Deleting the topic while Debezium still has outbox rows for it would leave the shared connector
    # retrying sends to a missing topic: wait until every outbox row of this topic has arrived.
    await asyncio.to_thread(wait_until, lambda: _written(stack, topic) <= _arrived(stack, topic), 60,
                            what=f"every outbox row of {topic} on the topic")
    for f in admin.delete_topics([dlq]).values():
        f.result(timeout=30)


def _written(stack, topic: str) -> set[str]:
    """The event ids of the outbox rows routed to ``topic``."""
    import asyncio

    import asyncpg

    async def ids() -> set[str]:
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            rows = await conn.fetch("SELECT id::text FROM outbox WHERE aggregatetype = $1", topic)
            return {r["id"] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(ids())


def _arrived(stack, topic: str) -> set[str]:
    """The event ids on ``topic`` (records produced by the tests themselves carry none)."""
    return {v.decode().strip('"') for msg in iter_topic(stack.bootstrap_servers, topic)
            for k, v in msg.headers() or [] if k == "event_id"}


@pytest.fixture(scope="session")
async def catalog(stack, codec, connect_client, catalog_topic):
    from shopflow.catalog import Catalog

    c = await Catalog.open(stack, codec, topic=catalog_topic, pool_size=5)
    yield c
    await c.close()


@pytest.fixture(scope="session")
def search(stack):
    from shopflow.search import ProductSearch

    s = ProductSearch.connect(stack, unique("test-products"))
    s.ensure_index()
    yield s
    s.delete_index()
    s.close()


@pytest.fixture(scope="session")
def indexer(stack, search, catalog_topic):
    from shopflow.streams.indexer import run

    running = RunningIndexer(threading.Thread(), threading.Event())

    def target() -> None:
        try:
            run(stack, running.stop, topic=catalog_topic, index=search.index, group_id=unique("test-indexer"),
                on_batch=running.batches.append)
        except BaseException as exc:  # surfaced by wait_until
            running.errors.append(exc)

    running.thread = threading.Thread(target=target, name="search-indexer", daemon=True)
    running.thread.start()
    yield running
    running.stop.set()
    running.thread.join(30)
    assert not running.errors, running.errors
