"""The real broker and PostgreSQL set up for redrive tests (tests/test_redrive.py, tests/test_dead_letters.py,
tests/console/test_dead_letters.py): a ledger in a throwaway schema, dead-letter topics with dead letters on
them, a redrive run, what landed on a topic, and what the audit log has of an action (the Connect page's
tests use that too). ``from redrive_support import ...`` (tests/ is on sys.path).
"""

from __future__ import annotations

import asyncio

import pytest

from shopflow.redrive import RedriveOutcome


def dlq_headers(topic: str = "order-commands", partition: str = "2", offset: str = "41") -> list[tuple[str, bytes]]:
    """The headers ``schemas.deadletter.dead_letter`` gives a record of ``topic`` (an unexpected CancelOrder)."""
    return [("dlq.topic", topic.encode()), ("dlq.partition", partition.encode()), ("dlq.offset", offset.encode()),
            ("dlq.reason", b"unexpected-record"), ("dlq.detail", b"CancelOrder for order o-1, which was never placed")]


@pytest.fixture(scope="session")
def ledger_settings(stack, pg_schema_factory):
    """Settings whose PostgreSQL schema is a throwaway one, migrated: the ledger table is there, with the
    rows of this session's tests only (each test's dead-letter topic is its own)."""
    from shopflow.db import migrate_database

    schema = pg_schema_factory("redrive")
    asyncio.run(migrate_database(stack, schema=schema))
    return stack.model_copy(update={"postgres_schema": schema})


@pytest.fixture
def dead_lettered(stack, admin, topic_factory, producer):
    """``dead_lettered(n)``: a source topic (2 partitions) and its ``.dlq`` with n dead letters of partition 1."""
    from confluent_kafka.admin import NewTopic

    made: list[str] = []

    def make(n: int = 1) -> tuple[str, str]:
        source = topic_factory("redrive", partitions=2)
        dlq = f"{source}.dlq"
        admin.create_topics([NewTopic(dlq, 1, 1)])[dlq].result(timeout=30)
        made.append(dlq)
        for i in range(n):
            producer.produce(dlq, key=f"k{i}".encode(), value=f"v{i}".encode(),
                             headers=[("origin", b"test"), *dlq_headers(source, "1", str(i))])
        producer.flush(10)
        return source, dlq

    yield make
    if made:
        for f in admin.delete_topics(made).values():
            f.result(timeout=30)


def run_redrive(settings, positions, **kw) -> list[RedriveOutcome]:
    from shopflow.db import connect
    from shopflow.redrive import redrive

    async def go():
        conn = await connect(settings)
        try:
            return await redrive(settings, conn, positions, redriven_by=kw.pop("by", "test"), **kw)
        finally:
            await conn.close()

    return asyncio.run(go())


def ledger(settings, sql, *args):
    from shopflow.db import connect

    async def go():
        conn = await connect(settings)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def copies_on(stack, topic: str) -> list[tuple[int, int, dict]]:
    from shopflow.streams.client import iter_topic

    return [(m.partition(), m.offset(), dict(m.headers() or [])) for m in iter_topic(stack.bootstrap_servers, topic)]




def audit_rows(settings, action: str, target: str) -> list[dict]:
    """The audit log's rows of ``action`` on ``target`` (actor and detail), oldest first."""
    from shopflow.db import connect

    async def rows():
        conn = await connect(settings)
        try:
            return [dict(r) for r in await conn.fetch(
                "SELECT actor, detail FROM audit_log WHERE action = $1 AND target = $2 ORDER BY id", action, target)]
        finally:
            await conn.close()

    return asyncio.run(rows())
