"""The catalog pipeline for tests over the real stack, shared by the catalog's tests (tests/catalog) and
the edge's catalog routes (tests/api/test_catalog_routes.py): the outbox connector, throwaway topics
drained before they are deleted, a throwaway index, and the search indexer in a thread, whose
``failure`` a wait on the index takes as ``give_up`` (tests/polling.py): it fails at once when that
indexer died.

Test folders are not packages; ``tests/`` is on ``sys.path`` (its conftest): ``import catalog_pipeline``.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polling import eventually

from shopflow.settings import Settings

if TYPE_CHECKING:
    from shopflow.catalog.search_index import ProductSearch
    from shopflow.connectors.apply import ConnectClient


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- the indexer ----------------------------------------------------------------------------------------------


@dataclass
class RunningIndexer:
    """The search indexer (``shopflow.streams.indexer.run``) in a thread, with what it did and how it died."""

    thread: threading.Thread
    stop: threading.Event
    batches: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @classmethod
    def start(cls, stack: Settings, *, topic: str, index: str, name: str = "search-indexer") -> RunningIndexer:
        from shopflow.streams.indexer import run

        running = cls(threading.Thread(), threading.Event())

        def target() -> None:
            try:
                run(stack, running.stop, topic=topic, index=index, group_id=unique(f"test-{name}"),
                    on_batch=running.batches.append)
            except BaseException as exc:  # surfaced by failure() and by close()
                running.errors.append(exc)

        running.thread = threading.Thread(target=target, name=name, daemon=True)
        running.thread.start()
        return running

    def failure(self) -> str | None:
        """Why waiting on the index is pointless (the indexer died), or None: a wait's ``give_up``."""
        return f"the indexer died: {self.errors[0]!r}" if self.errors else None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.errors, self.errors


# -- the outbox connector and the topics it writes -----------------------------------------------------


def apply_outbox_connector(stack: Settings) -> ConnectClient:
    """The public schema migrated (the connector's publication needs its outbox table), the connector
    applied and RUNNING; the client, to be closed by the caller."""
    from shopflow.connectors.apply import CONNECTORS_DIR, ConnectClient, load
    from shopflow.db import migrate_database

    asyncio.run(migrate_database(stack, schema="public"))
    client = ConnectClient(stack.connect_url)
    client.apply(load(CONNECTORS_DIR / "catalog-outbox.json"))
    return client


async def drop_replication(conn: Any, slot: str) -> None:
    """The replication slot and publication a test connector named ``slot`` made, if it got to make them."""
    await conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       "WHERE slot_name = $1 AND NOT active", slot)
    if await conn.fetchval("SELECT 1 FROM pg_publication WHERE pubname = $1", slot):
        await conn.execute(f'DROP PUBLICATION "{slot}"')  # a name a test made: [a-z0-9_]


def outbox_ids(stack: Settings, topic: str) -> set[str]:
    """The event ids of the outbox rows routed to ``topic``."""
    import asyncpg

    async def ids() -> set[str]:
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            return {r["id"] for r in await conn.fetch("SELECT id::text FROM outbox WHERE aggregatetype = $1", topic)}
        finally:
            await conn.close()

    return asyncio.run(ids())


def topic_event_ids(stack: Settings, topic: str) -> set[str]:
    """The event ids on ``topic`` (records produced by the tests themselves carry none)."""
    from shopflow.streams.client import iter_topic

    return {v.decode().strip('"') for msg in iter_topic(stack.bootstrap_servers, topic)
            for k, v in msg.headers() or [] if k == "event_id"}


def drain_outbox(stack: Settings, topic: str, timeout_s: float = 60.0) -> None:
    """Until every outbox row routed to ``topic`` is on it. Call it before deleting the topic: the
    shared connector would otherwise keep retrying sends to a missing topic, for everyone."""
    eventually(lambda: outbox_ids(stack, topic) <= topic_event_ids(stack, topic), timeout_s,
               what=f"every outbox row of {topic} on the topic")


@asynccontextmanager
async def outbox_topic(stack: Settings, topic_factory: Callable[..., str], admin: Any,
                       prefix: str) -> AsyncIterator[str]:
    """A fresh topic standing for catalog.products, with its dead-letter topic (no auto-creation here);
    drained of the outbox's events for it, then its dead-letter topic deleted."""
    from confluent_kafka.admin import NewTopic

    topic = topic_factory(prefix, partitions=3)
    dlq = f"{topic}.dlq"
    admin.create_topics([NewTopic(dlq, 1, 1)])[dlq].result(timeout=30)
    try:
        yield topic
    finally:
        await asyncio.to_thread(drain_outbox, stack, topic)
        for f in admin.delete_topics([dlq]).values():
            f.result(timeout=30)


@contextmanager
def throwaway_index(stack: Settings, prefix: str) -> Iterator[ProductSearch]:
    """A fresh product index from the declared definition, deleted afterwards."""
    from shopflow.catalog.search_index import ProductSearch

    search = ProductSearch.connect(stack, unique(prefix))
    search.ensure_index()
    try:
        yield search
    finally:
        search.delete_index()
        search.close()
