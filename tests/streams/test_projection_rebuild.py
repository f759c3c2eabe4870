"""``shopflow projection rebuild``: the orders read model built again from its topic and swapped in while
the live projection writes it and readers read it.

The integration tests run on the real Kafka and PostgreSQL, over a throwaway orders topic and
PostgreSQL schema, with the live projection (``OrderProjection``) running beside the rebuild and the
edge's own queries (``api.orders_store``) reading through a pool, as the edge does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import asyncpg
import pytest
import test_order_projection as projection_tests
from confluent_kafka import TopicPartition
from polling import eventually_async
from test_order_projection import T0, Running, cancelled, placed
from typer.testing import CliRunner

from shopflow.schemas.orders import OrderConfirmed
from shopflow.schemas.records import Money
from shopflow.streams.order_projection import LIVE_TABLES, ViewTables, apply, change_of, statements
from shopflow.streams.projection_rebuild import (
    REBUILD_ID,
    SHADOW_TABLES,
    OrdersLog,
    PartitionRead,
    Rebuild,
    RebuildError,
    expired_partitions,
    lock_statement,
    rebuild,
)
from shopflow.topologies.orders import ORDERS_VIEW_CHANNEL

integration = pytest.mark.integration
# The projection tests' fixtures, by name: the test topic, a connection, a producer of orders events.
orders_topic, db, send = projection_tests.orders_topic, projection_tests.db, projection_tests.send
ALL_COLUMNS = "SELECT * FROM orders_view ORDER BY order_id"
SHAPE = """
SELECT c.relname AS tbl, i.relname AS idx, pg_get_indexdef(x.indexrelid) AS def
FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname LIKE 'orders_view%'
UNION ALL
SELECT c.relname, n.conname, pg_get_constraintdef(n.oid) FROM pg_constraint n JOIN pg_class c ON c.oid = n.conrelid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname LIKE 'orders_view%'
UNION ALL
SELECT table_name, column_name, concat_ws(' ', data_type, is_nullable, column_default) FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name LIKE 'orders_view%'
ORDER BY 1, 2"""


# -- without servers ---------------------------------------------------------------------------------------


def test_the_live_tables_are_locked_in_the_order_the_projection_writes_them():
    mark, upsert = statements(LIVE_TABLES)
    assert "orders_view_events" in mark and "orders_view " in upsert  # apply: the mark, then the row
    assert lock_statement() == "LOCK TABLE orders_view_events, orders_view IN ACCESS EXCLUSIVE MODE"


def test_the_shadow_statements_write_only_the_shadow_tables_and_notify_no_one():
    mark, upsert = statements(SHADOW_TABLES)
    assert "orders_view_events_rebuild" in mark and "INTO orders_view_rebuild AS v" in upsert
    assert not SHADOW_TABLES.notifies and LIVE_TABLES.notifies


def test_only_plain_table_names_reach_the_statements():
    with pytest.raises(ValueError, match="not a plain table name"):
        ViewTables("orders_view; DROP TABLE x", "e")


def test_partitions_whose_first_records_expired_are_named_with_their_first_offset():
    assert expired_partitions({0: 0, 1: 120, 2: 0, 3: 7}) == {1: 120, 3: 7}
    assert PartitionRead(start=5, position=8, end=20).remaining == 12
    assert PartitionRead(start=5, position=25, end=20).remaining == 0  # read beyond the end


def test_projection_still_runs_the_projection_and_rebuild_is_its_subcommand(monkeypatch):
    import shopflow.streams.order_projection as order_projection
    from shopflow.cli import app

    ran: list[object] = []
    monkeypatch.setattr(order_projection, "main", ran.append)

    assert CliRunner().invoke(app, ["projection"]).exit_code == 0
    assert len(ran) == 1  # the launcher's and the demo's `shopflow projection`
    listed = CliRunner().invoke(app, ["projection", "--help"])
    assert "rebuild" in listed.output and len(ran) == 1


# -- on the real servers -----------------------------------------------------------------------------------


def history(n: int, prefix: str) -> tuple[list, dict[str, str]]:
    """Events of n orders with every kind of life (pending, confirmed, cancelled, refunded, redelivered),
    in the order the saga writes them, and each order's final status."""
    events, final = [], {}
    for i in range(n):
        order, user = f"{prefix}-{i:05d}", f"u-{i % 7}"
        first = placed(order, user, at=T0 + timedelta(seconds=i))
        events.append(first)
        kind = i % 5
        if kind in (1, 4):
            events.append(OrderConfirmed(str(uuid.uuid4()), order, user, Money(4498, "EUR"), f"pay-{i}",
                                         T0 + timedelta(seconds=i, milliseconds=500)))
        if kind in (2, 4):
            events.append(cancelled(order, user, refunded=kind == 4, at=T0 + timedelta(seconds=i)))
        if kind == 3:
            events.append(first)  # redelivered
        final[order] = {0: "PENDING", 1: "CONFIRMED", 2: "CANCELLED", 3: "PENDING", 4: "REFUNDED"}[kind]
    return events, final


async def settled(db, final: dict[str, str], timeout_s: float = 90) -> None:
    async def check() -> bool:
        rows = await db.fetch("SELECT order_id, status FROM orders_view WHERE order_id = ANY($1::text[])",
                              list(final))
        got = {r["order_id"]: r["status"] for r in rows}
        assert got == final, f"{len(got)}/{len(final)} orders as expected"
        return True

    await eventually_async(check, timeout_s=timeout_s, interval_s=0.3)


@pytest.fixture
def settings(stack, pg_schema_factory):
    """A throwaway schema per test: a rebuild keeps only what its test's topic holds."""
    return stack.model_copy(update={"postgres_schema": pg_schema_factory("rebuildtest")})


@pytest.fixture
async def live(settings, codec, orders_topic):
    """The live projection on the test topic, running beside the rebuild."""
    running = Running(settings, codec, orders_topic, f"test-{uuid.uuid4().hex}")
    yield running
    assert not running.task.done(), running.task  # it never stopped (a failed write would end it)
    await running.close()


@pytest.fixture
async def model(db, send, live):
    """``await model(n)``: n orders sent and shown by the live model; their final statuses."""

    async def make(n: int = 300, prefix: str | None = None) -> dict[str, str]:
        events, final = history(n, prefix or f"o-{uuid.uuid4().hex[:6]}")
        send(*events)
        await settled(db, final)
        return final

    return make


async def shadow_tables(db) -> list[str]:
    return [r["relname"] for r in await db.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
        "AND relname LIKE '%rebuild%'")]


@integration
async def test_rebuild_reproduces_the_read_model_while_the_projection_runs(
        settings, codec, orders_topic, db, send, model, live):
    # Given a read model kept by the live projection, and a record it dead-letters
    final = await model(300)
    send(raw=b"\x07not avro", key="o-poison")
    before, shape_before = await db.fetch(ALL_COLUMNS), await db.fetch(SHAPE)
    events_before = await db.fetch("SELECT event_id, order_id FROM orders_view_events ORDER BY event_id")

    # When it is rebuilt
    outcome = await rebuild(settings, codec, topic=orders_topic)

    # Then every row and column is as it was, the tables keep their indexes and constraints by name
    assert await db.fetch(ALL_COLUMNS) == before
    assert await db.fetch("SELECT event_id, order_id FROM orders_view_events ORDER BY event_id") == events_before
    assert await db.fetch(SHAPE) == shape_before
    assert await shadow_tables(db) == []
    assert outcome.orders == len(final) and outcome.skipped == 1 and outcome.duplicates == len(final) // 5
    assert sum(outcome.read.values()) == len(events_before) + outcome.duplicates + 1
    # And the live projection, its statements prepared before the swap, writes into the new tables.
    order = f"o-after-{uuid.uuid4().hex[:6]}"
    send(placed(order))
    await settled(db, {order: "PENDING"})


@integration
async def test_a_write_waiting_on_the_swap_lands_in_the_new_tables(settings, codec, orders_topic, db):
    from shopflow.db import connect

    # Given the live projection's connection, its statements prepared on the live tables
    writer, watcher = await connect(settings), await connect(settings)
    log = OrdersLog(settings, orders_topic)
    try:
        assert await apply(writer, change_of(placed("o-before")))
        swap = Rebuild(settings, codec, db, log, lambda *_: None)
        await swap.make_shadow()

        # When it writes while the swap holds the lock
        async with db.transaction():
            await db.execute(lock_statement())
            waiting = asyncio.create_task(apply(writer, change_of(placed("o-waiting"))))

            async def blocked() -> bool:
                state = await watcher.fetchval("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                                               writer.get_server_pid())
                assert state == "Lock", state
                return True

            await eventually_async(blocked, timeout_s=10)
            await swap.replace_live()

        # Then its write goes into the tables swapped in (the ones it was prepared on are gone)
        assert await asyncio.wait_for(waiting, 10) is True
        assert [r["order_id"] for r in await db.fetch("SELECT order_id FROM orders_view")] == ["o-waiting"]
        assert await db.fetchval("SELECT count(*) FROM orders_view_events") == 1
        assert await apply(writer, change_of(placed("o-after")))  # and so does the next one
        assert await db.fetchval("SELECT count(*) FROM orders_view") == 2
    finally:
        log.close()
        await writer.close()
        await watcher.close()


@integration
async def test_events_sent_during_the_rebuild_reach_the_rebuilt_model(
        settings, codec, orders_topic, db, send, model, live):
    final = await model(300)
    woken: set[str] = set()
    await db.add_listener(ORDERS_VIEW_CHANNEL, lambda *args: woken.add(args[3]))
    during: dict[str, dict[str, str]] = {"fill": {}, "swap": {}}

    def produce_while(phase: str, _partitions) -> None:
        # Sent once the phase's ends are read: those sent in the fill come in the tail read under the
        # lock; those sent under the lock are left to the live projection, after the swap.
        if phase in during and not during[phase]:
            events, during[phase] = history(20, f"o-{phase}-{uuid.uuid4().hex[:6]}")
            send(*events)

    outcome = await rebuild(settings, codec, topic=orders_topic, report=produce_while)

    assert sum(outcome.read.values()) > 0 and outcome.lock_ms < 5_000
    await settled(db, {**final, **during["fill"], **during["swap"]})
    # Readers waiting on those orders hear of them, from the projection or from the swap.
    await eventually_async(lambda: _all_in(woken, {**during["fill"], **during["swap"]}), timeout_s=30)


async def _all_in(seen: set[str], wanted) -> bool:
    assert set(wanted) <= seen, f"{len(set(wanted) - seen)} orders never notified"
    return True


@integration
async def test_readers_answer_throughout_the_rebuild(settings, codec, orders_topic, db, model):
    from shopflow.api.orders_store import fetch_order, list_orders
    from shopflow.db import create_pool

    final = await model(1500)
    known = sorted(final)
    pool = await create_pool(settings, min_size=2, max_size=2)  # the edge's pool: prepared statements reused
    done = asyncio.Event()
    problems: list[str] = []
    answered: list[tuple[float, float]] = []  # (when, how long)

    async def reader() -> None:
        n = 0
        while not done.is_set():
            began = time.monotonic()
            try:
                order = known[n % len(known)]
                if await fetch_order(pool, order) is None:
                    problems.append(f"{order} missing")
                page, _ = await list_orders(pool, user_id="u-3", cursor=None, limit=20)
                if len(page) != 20:
                    problems.append(f"a page of {len(page)} orders")
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                problems.append(repr(exc))
            answered.append((began, time.monotonic() - began))
            n += 1

    readers = [asyncio.create_task(reader()) for _ in range(2)]
    try:
        await rebuild(settings, codec, topic=orders_topic)
        swapped_at = time.monotonic()

        async def new_tables_read() -> bool:
            assert sum(1 for when, _ in answered if when > swapped_at) >= 2
            return True

        await eventually_async(new_tables_read, timeout_s=30)
    finally:
        done.set()
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        await pool.close()

    assert problems == []
    slowest = max(took for _, took in answered)
    assert slowest < 5, f"a reader waited {slowest:.2f}s"
    print(f"\n{len(answered)} reads during the rebuild, slowest {slowest * 1000:.0f} ms")


@integration
async def test_a_damaged_read_model_is_repaired(settings, codec, orders_topic, db, model):
    final = await model(200)
    good = await db.fetch(ALL_COLUMNS)
    # Given rows deleted (with their applied events), rows edited by hand, and an order that never was
    gone, edited = sorted(final)[:10], sorted(final)[10:20]
    await db.execute("DELETE FROM orders_view WHERE order_id = ANY($1::text[])", gone)
    await db.execute("DELETE FROM orders_view_events WHERE order_id = ANY($1::text[])", gone[:5])
    await db.execute("UPDATE orders_view SET status = 'PENDING', status_rank = 1, total_minor = 1, lines = '[]' "
                     "WHERE order_id = ANY($1::text[])", edited)
    await db.execute("INSERT INTO orders_view SELECT 'o-invented', user_id, status, status_rank, lines, total_minor,"
                     " currency, reason, detail, payment_id, created_at, updated_at, last_event_id FROM orders_view "
                     "LIMIT 1")

    await rebuild(settings, codec, topic=orders_topic)

    assert await db.fetch(ALL_COLUMNS) == good


@integration
async def test_an_interrupted_rebuild_leaves_the_live_model_as_it_was(settings, codec, orders_topic, db, model):
    await model(300)
    before = await db.fetch(ALL_COLUMNS)

    # When the rebuild is stopped in the fill (Ctrl-C cancels the command's task), or fails there
    task: asyncio.Task | None = None

    def stop_midway(phase: str, partitions: dict[int, PartitionRead]) -> None:
        if phase == "fill" and sum(p.records for p in partitions.values()) > 0 and task is not None:
            task.cancel()

    task = asyncio.create_task(rebuild(settings, codec, topic=orders_topic, report=stop_midway))
    with pytest.raises(asyncio.CancelledError):
        await task

    def fail_midway(phase: str, partitions: dict[int, PartitionRead]) -> None:
        if phase == "fill" and sum(p.records for p in partitions.values()) > 0:
            raise RuntimeError("failed midway")

    with pytest.raises(RuntimeError, match="failed midway"):
        await rebuild(settings, codec, topic=orders_topic, report=fail_midway)

    # Then the live model is as it was, no shadow table is left, and the next run goes through
    assert await db.fetch(ALL_COLUMNS) == before
    assert await shadow_tables(db) == []
    assert (await rebuild(settings, codec, topic=orders_topic)).orders == len(before)


@integration
async def test_expired_events_stop_the_rebuild_unless_their_orders_are_kept(
        settings, codec, orders_topic, db, send, admin, model):
    # Given the oldest orders' events deleted from the topic (what retention does after 30 days)
    final = await model(100)
    before = await db.fetch(ALL_COLUMNS)
    ends = [TopicPartition(orders_topic, p, 5) for p in range(3)]
    for future in admin.delete_records(ends).values():
        future.result(timeout=30)

    with pytest.raises(RebuildError, match=r"no longer holds its oldest events .*--keep-expired"):
        await rebuild(settings, codec, topic=orders_topic)
    outcome = await rebuild(settings, codec, topic=orders_topic, keep_expired=True)

    assert await db.fetch(ALL_COLUMNS) == before
    assert 0 < outcome.carried_over < len(final)


@integration
async def test_one_rebuild_at_a_time(settings, codec, orders_topic, db):
    # Given a rebuild running on the schema (its lock taken here)
    await db.execute("SELECT pg_advisory_lock(hashtext($1 || current_schema()))", REBUILD_ID)
    try:
        with pytest.raises(RebuildError, match=r"another `shopflow projection rebuild` is running .*pid \d+"):
            await rebuild(settings, codec, topic=orders_topic)
    finally:
        await db.execute("SELECT pg_advisory_unlock(hashtext($1 || current_schema()))", REBUILD_ID)


@integration
async def test_a_broker_that_is_down_is_named_with_what_to_do(settings, codec):
    away = settings.model_copy(update={"kafka_port": 1})
    with pytest.raises(RebuildError, match=r"cannot reach Kafka at .*shopflow stack"):
        await rebuild(away, codec, topic="orders")


async def test_a_database_that_is_down_is_named_with_what_to_do(settings_without_servers):
    with pytest.raises(RebuildError, match=r"cannot reach PostgreSQL at .*shopflow stack"):
        await rebuild(settings_without_servers, None, topic="orders")  # type: ignore[arg-type]


@pytest.fixture
def settings_without_servers():
    from shopflow.settings import get_settings

    return get_settings().model_copy(update={"postgres_port": 1})
