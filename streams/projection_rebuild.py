"""``shopflow projection rebuild``: the orders read model built again from the ``orders`` topic and swapped
in while the edge keeps reading it and the live projection keeps writing it.

1. fill: shadow tables made ``LIKE`` the live ones (``INCLUDING ALL``: columns, defaults, checks,
   indexes, comments; the grants copied) are filled by the projection's own ``handle``/``apply``, from
   the beginning of every partition to its end when the rebuild started. The topic is read by
   assignment, outside any consumer group: nothing is committed, the live projection's offsets stay its own;
2. catch up: read on to the newest ends until the tail left is short;
3. swap, in one transaction: lock the live tables (``ACCESS EXCLUSIVE``, in the order the projection
   takes them, so neither waits on the other in a cycle), apply the last tail up to the ends read
   while the lock is held, NOTIFY the orders the live tables had not shown yet (their ``?wait=``
   readers would not hear of them again: the live projection skips those events as applied), drop the
   live tables and give the shadow ones (and their indexes) the live names. Readers and the live
   projection wait for that transaction, milliseconds, then go on: PostgreSQL resolves a relation's
   name again when a prepared statement's relation changed, so both reach the new tables (tested).

Complete: every event below the ends read under the lock is in the new tables; while the lock is held
the live projection applies nothing, and afterwards it goes on from its own position, its already
applied events skipped by event id. An interrupted rebuild leaves the live model as it was: until the
swap it writes only the shadow tables (dropped on the way out, and again by the next run).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import asyncpg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from shopflow.db import connect, migrate
from shopflow.schemas.codec import AvroCodec
from shopflow.settings import Settings
from shopflow.streams.order_projection import LIVE_TABLES, OrderProjection, ViewTables, consumer_config
from shopflow.topologies.catalog import ORDERS
from shopflow.topologies.orders import ORDERS_VIEW_CHANNEL

# The rebuild's client id and application name; it is assigned partitions, never joins or commits a group.
REBUILD_ID = "shopflow-order-projection-rebuild"
SHADOW_TABLES = ViewTables("orders_view_rebuild", "orders_view_events_rebuild", notifies=False)
BATCH = 500  # records per shadow transaction
SHORT_TAIL = 200  # offsets still to read under which the swap goes ahead: readers wait while they are applied
CATCH_UP_ROUNDS = 5  # then the swap goes ahead anyway: producers outpacing the rebuild only lengthen the lock
LOCK_TIMEOUT_MS = 5_000  # a longer wait for the lock would hold every reader queued behind it
LOCK_ATTEMPTS = 3
STALL_S = 60.0  # nothing read for this long while records remain: the broker is away
UP = "check `shopflow stack status` (start it with `shopflow stack up`)"
UNTOUCHED = "the live read model is untouched; run `shopflow projection rebuild` again"


class RebuildError(RuntimeError):
    """The rebuild cannot go on; the message says why and what to do next."""


@dataclass
class PartitionRead:
    """How far one partition has been read: offsets ``start`` (its first record) to ``end`` (the target)."""

    start: int
    position: int
    end: int
    records: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.end - self.position)


Report = Callable[[str, dict[int, PartitionRead]], None]


@dataclass
class RebuildOutcome:
    orders: int = 0  # rows of the rebuilt model
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0  # records the live projection dead-letters (undecodable or not storable)
    carried_over: int = 0  # orders kept from the old model because their events expired (--keep-expired)
    woken: int = 0  # orders NOTIFYed at the swap
    lock_ms: float = 0.0  # how long readers and the live projection waited
    seconds: float = 0.0
    read: dict[int, int] = field(default_factory=dict)  # records read per partition


def expired_partitions(starts: dict[int, int]) -> dict[int, int]:
    """Partitions whose first records are gone (retention): their first offset, where it is not 0."""
    return {p: start for p, start in sorted(starts.items()) if start > 0}


def lock_statement(tables: ViewTables = LIVE_TABLES) -> str:
    # Events table first: ``apply`` marks the event, then upserts the row. Taking them the other way
    # round could deadlock with a change half applied.
    return f"LOCK TABLE {tables.events}, {tables.view} IN ACCESS EXCLUSIVE MODE"


def kafka_reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else exc
    return error.str() if isinstance(error, KafkaError) else str(error)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class OrdersLog:
    """The orders topic read partition by partition from its beginning up to ends that can move on."""

    def __init__(self, settings: Settings, topic: str):
        self.topic = topic
        # librdkafka's own log would repeat every failed connection; the errors raised here say what to do.
        quiet: dict[str, str | int | float | bool] = {"bootstrap.servers": settings.bootstrap_servers, "log_level": 2}
        # Ends are asked on a connection of their own: on the consumer's they would queue behind its fetches.
        self.admin = AdminClient(quiet)
        try:
            meta = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                raise RebuildError(f"topic {topic} does not exist on {settings.bootstrap_servers}: create the "
                                   "catalog's topics with `shopflow topics apply`")
            firsts = self._offsets(sorted(meta.partitions), OffsetSpec.earliest())
        except KafkaException as exc:
            raise RebuildError(f"cannot reach Kafka at {settings.bootstrap_servers} ({kafka_reason(exc)}); "
                               f"{UP}") from None
        self.partitions = {p: PartitionRead(start=first, position=first, end=first) for p, first in firsts.items()}
        self.consumer = Consumer({**consumer_config(settings, REBUILD_ID), **quiet, "client.id": REBUILD_ID,
                                  "enable.partition.eof": True})
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])

    def _offsets(self, partitions: list[int], spec: OffsetSpec) -> dict[int, int]:
        # Read committed, as the live projection reads: the ends are the last stable offsets.
        asked = {TopicPartition(self.topic, p): spec for p in partitions}
        answers = self.admin.list_offsets(asked, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=10)
        return {tp.partition: future.result().offset for tp, future in answers.items()}

    def refresh_ends(self) -> None:
        try:
            for p, end in self._offsets(list(self.partitions), OffsetSpec.latest()).items():
                self.partitions[p].end = end
        except KafkaException as exc:
            raise RebuildError(f"Kafka stopped answering ({kafka_reason(exc)}); {UP}; {UNTOUCHED}") from None

    @property
    def remaining(self) -> int:
        return sum(part.remaining for part in self.partitions.values())

    async def batches(self, size: int = BATCH) -> AsyncIterator[list[Message]]:
        """Records up to the ends (and any beyond them fetched along), in order within a partition."""
        last_progress = time.monotonic()
        while self.remaining:
            if time.monotonic() - last_progress > STALL_S:
                raise RebuildError(f"nothing read from {self.topic} in {STALL_S:.0f}s with {self.remaining:,} "
                                   f"records to go; is Kafka up? {UP}; {UNTOUCHED}")
            batch = []
            # consume() waits for as many records as asked, or the timeout: no more than are left (and
            # an end-of-partition event each), so a short tail read under the swap's lock takes no wait.
            wanted = min(size, self.remaining + sum(1 for p in self.partitions.values() if p.remaining))
            for msg in await asyncio.to_thread(self.consumer.consume, wanted, 0.2):
                part, offset, error = self.partitions[msg.partition() or 0], msg.offset() or 0, msg.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    if error.retriable():
                        continue
                    raise RebuildError(f"reading {self.topic}: {error.str()}; {UNTOUCHED}")
                last_progress = time.monotonic()
                # The end of a partition is past its transaction markers, which are never delivered.
                part.position = max(part.position, offset if error is not None else offset + 1)
                if error is None:
                    part.records += 1
                    batch.append(msg)
            if batch:
                yield batch

    def close(self) -> None:
        self.consumer.close()


class Rebuild:
    def __init__(self, settings: Settings, codec: AvroCodec, conn: asyncpg.Connection, log: OrdersLog,
                 report: Report):
        self.conn = conn
        self.log = log
        self.report = report
        self.projection = OrderProjection(settings, codec, topic=log.topic)
        self.outcome = RebuildOutcome()

    async def read_to_ends(self, phase: str) -> set[str]:
        """Apply records up to the log's ends to the shadow tables; the keys (order ids) read."""
        keys: set[str] = set()
        self.report(phase, self.log.partitions)
        async for batch in self.log.batches():
            async with self.conn.transaction():  # one commit per batch; each change its own savepoint
                for msg in batch:
                    if await self.projection.handle(self.conn, msg, SHADOW_TABLES) is not None:
                        self.outcome.skipped += 1  # the live projection dead-letters it: no second letter
                    keys.add((msg.key() or b"").decode(errors="replace"))
            self.report(phase, self.log.partitions)
        return keys

    async def make_shadow(self) -> None:
        """Empty shadow tables shaped as the live ones now are (a previous run's are dropped)."""
        await self.drop_shadow()
        for live, shadow in ((LIVE_TABLES.view, SHADOW_TABLES.view), (LIVE_TABLES.events, SHADOW_TABLES.events)):
            triggers = await self.conn.fetchval(
                "SELECT string_agg(tgname, ', ') FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal",
                live)
            if triggers:
                raise RebuildError(f"{live} has triggers ({triggers}) a rebuild would not carry over: teach "
                                   "streams/projection_rebuild.py to recreate them first")
            await self.conn.execute(f"CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL)")
            grants = await self.conn.fetch(
                "SELECT a.privilege_type, a.is_grantable, CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
                "ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee "
                "FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1::regclass AND a.grantee <> c.relowner",
                live)
            for g in grants:
                option = " WITH GRANT OPTION" if g["is_grantable"] else ""
                await self.conn.execute(f"GRANT {g['privilege_type']} ON {shadow} TO {g['grantee']}{option}")

    async def drop_shadow(self) -> None:
        await self.conn.execute(f"DROP TABLE IF EXISTS {SHADOW_TABLES.view}, {SHADOW_TABLES.events}")

    async def carry_over(self) -> None:
        """Orders whose events expired keep their rows (and applied events) from the live model: the
        orders missing from the shadow, and those whose OrderPlaced (their lines) is gone.

        Copied before the lock: what the live projection applies to them afterwards and before the
        swap would be missed, but their events are as old as the retention, long applied."""
        live, shadow = LIVE_TABLES, SHADOW_TABLES
        async with self.conn.transaction():
            await self.conn.execute(
                f"CREATE TEMP TABLE carried ON COMMIT DROP AS SELECT l.order_id FROM {live.view} l "
                f"LEFT JOIN {shadow.view} s USING (order_id) "
                "WHERE s.order_id IS NULL OR (s.lines = '[]'::jsonb AND l.lines <> '[]'::jsonb)")
            await self.conn.execute(f"DELETE FROM {shadow.events} WHERE order_id IN (SELECT order_id FROM carried)")
            await self.conn.execute(f"DELETE FROM {shadow.view} WHERE order_id IN (SELECT order_id FROM carried)")
            await self.conn.execute(f"INSERT INTO {shadow.events} SELECT * FROM {live.events} "
                                    "WHERE order_id IN (SELECT order_id FROM carried)")
            status = await self.conn.execute(f"INSERT INTO {shadow.view} SELECT * FROM {live.view} "
                                             "WHERE order_id IN (SELECT order_id FROM carried)")
        self.outcome.carried_over = int(status.split()[-1])

    async def swap(self) -> None:
        # Events the live tables lack, found before the lock (the live projection may apply some of them
        # still), so that the lock is held while only these and the tail are checked, not every event.
        unseen = await self.conn.fetch(
            f"SELECT s.event_id, s.order_id FROM {SHADOW_TABLES.events} s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {LIVE_TABLES.events} l WHERE l.event_id = s.event_id)")
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            try:
                async with self.conn.transaction():
                    await self.conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                    await self.conn.execute(lock_statement())
                    locked = time.monotonic()
                    await asyncio.to_thread(self.log.refresh_ends)
                    tail = await self.read_to_ends("swap")
                    self.outcome.woken = await self.conn.fetchval(
                        "SELECT count(pg_notify($1, order_id)) FROM (SELECT u.order_id FROM unnest($2::uuid[], "
                        f"$3::text[]) AS u(event_id, order_id) WHERE NOT EXISTS (SELECT 1 FROM {LIVE_TABLES.events}"
                        " l WHERE l.event_id = u.event_id) UNION SELECT unnest($4::text[])) AS unshown",
                        ORDERS_VIEW_CHANNEL, [r["event_id"] for r in unseen], [r["order_id"] for r in unseen],
                        sorted(tail))
                    await self.replace_live()
                self.outcome.lock_ms = (time.monotonic() - locked) * 1000
                return
            except asyncpg.LockNotAvailableError:
                if attempt == LOCK_ATTEMPTS:
                    raise RebuildError(
                        f"orders_view stayed locked by another session ({LOCK_ATTEMPTS} waits of "
                        f"{LOCK_TIMEOUT_MS / 1000:.0f}s); look for a long transaction in pg_stat_activity, "
                        f"end it, and run again; {UNTOUCHED}") from None

    async def replace_live(self) -> None:
        """Drop the live tables; the shadow ones and their indexes take the live names."""
        renames = []
        for live, shadow in ((LIVE_TABLES.view, SHADOW_TABLES.view), (LIVE_TABLES.events, SHADOW_TABLES.events)):
            live_indexes, shadow_indexes = await self._indexes(live), await self._indexes(shadow)
            if sorted(live_indexes) != sorted(shadow_indexes):
                raise RebuildError(f"the indexes of {live} changed during the rebuild (a migration?); {UNTOUCHED}")
            renames += [(shadow_indexes[shape], name) for shape, name in live_indexes.items()]
        await self.conn.execute(f"DROP TABLE {LIVE_TABLES.view}, {LIVE_TABLES.events}")
        await self.conn.execute(f"ALTER TABLE {SHADOW_TABLES.view} RENAME TO {LIVE_TABLES.view}")
        await self.conn.execute(f"ALTER TABLE {SHADOW_TABLES.events} RENAME TO {LIVE_TABLES.events}")
        for old, new in renames:  # renaming a constraint's index renames the constraint too
            await self.conn.execute(f"ALTER INDEX {quote(old)} RENAME TO {quote(new)}")

    async def _indexes(self, table: str) -> dict[tuple[str, bool, bool], str]:
        """Index name by what it is (definition without its name and table, unique, primary)."""
        rows = await self.conn.fetch(
            "SELECT c.relname, i.indisunique, i.indisprimary, "
            "regexp_replace(pg_get_indexdef(i.indexrelid), '^.*? USING ', '') AS shape "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass", table)
        return {(r["shape"], r["indisunique"], r["indisprimary"]): r["relname"] for r in rows}


_REBUILD_KEY = "hashtext($1 || current_schema())::bigint"


async def _claim(conn: asyncpg.Connection) -> None:
    """One rebuild per schema at a time (they would share the shadow tables)."""
    if not await conn.fetchval(f"SELECT pg_try_advisory_lock({_REBUILD_KEY})", REBUILD_ID):
        holders = await conn.fetch(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            f"AND (classid::bigint << 32 | objid::bigint) = {_REBUILD_KEY}", REBUILD_ID)
        raise RebuildError("another `shopflow projection rebuild` is running on this schema (PostgreSQL pid "
                           f"{', '.join(str(r['pid']) for r in holders) or '?'}): wait for it to finish")


async def rebuild(settings: Settings, codec: AvroCodec, *, topic: str = ORDERS.name, keep_expired: bool = False,
                  report: Report = lambda phase, partitions: None) -> RebuildOutcome:
    """Rebuild ``orders_view`` from ``topic`` and swap it in (see the module's doc)."""
    began = time.monotonic()
    try:
        conn = await connect(settings, application_name=REBUILD_ID)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RebuildError(f"cannot reach PostgreSQL at {settings.host}:{settings.postgres_port} "
                           f"({exc}); {UP}") from None
    log: OrdersLog | None = None
    try:
        log = await asyncio.to_thread(OrdersLog, settings, topic)
        if await conn.fetchval("SELECT current_schema()") is None:
            raise RebuildError(f"PostgreSQL schema {settings.postgres_schema!r} does not exist: check "
                               "SHOPFLOW_POSTGRES_SCHEMA")
        await _claim(conn)
        await migrate(conn)
        gone = expired_partitions({p: part.start for p, part in log.partitions.items()})
        if gone and not keep_expired:
            raise RebuildError(
                f"{topic} no longer holds its oldest events (partition: first offset {gone}; retention "
                f"expired them), so a rebuild from it would lose those orders. Run `shopflow projection "
                f"rebuild --keep-expired` to keep those orders as the current read model has them")
        run = Rebuild(settings, codec, conn, log, report)
        await run.make_shadow()
        swapped = False
        try:
            await asyncio.to_thread(log.refresh_ends)
            await run.read_to_ends("fill")
            if keep_expired:
                await run.carry_over()
            for _ in range(CATCH_UP_ROUNDS):
                await asyncio.to_thread(log.refresh_ends)
                if log.remaining <= SHORT_TAIL:
                    break
                await run.read_to_ends("catch up")
            await run.swap()
            swapped = True
        finally:
            if not swapped and not conn.is_closed():
                # Best effort (the next run drops them too): the error that got here is what to report.
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await asyncio.shield(run.drop_shadow())
        run.outcome.orders = await conn.fetchval(f"SELECT count(*) FROM {LIVE_TABLES.view}")
        run.outcome.applied = run.projection.counts["applied"]
        run.outcome.duplicates = run.projection.counts["duplicate"]
        run.outcome.read = {p: part.records for p, part in log.partitions.items()}
        run.outcome.seconds = time.monotonic() - began
        report("done", log.partitions)
        return run.outcome
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise RebuildError(f"PostgreSQL failed midway ({exc}); {UP}; {UNTOUCHED}") from None
    finally:
        if log is not None:
            await asyncio.to_thread(log.close)
        await conn.close()


def main(settings: Settings, *, keep_expired: bool = False) -> RebuildOutcome:
    """``shopflow projection rebuild`` on a terminal: a bar per partition (records read, offsets to go)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from shopflow.schemas.registry import SchemaRegistry

    console = Console(stderr=True, highlight=False)
    registry = SchemaRegistry(settings.registry_url)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[records]:>10,} records"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bars:
        tasks: dict[int, TaskID] = {}
        shown = {"phase": ""}

        def report(phase: str, partitions: dict[int, PartitionRead]) -> None:
            if phase not in (shown["phase"], "done"):
                shown["phase"] = phase
                bars.console.print(f"{phase:<9} {sum(p.remaining for p in partitions.values()):,} offsets to read "
                                   f"into {settings.postgres_schema}.orders_view")
            for p, part in partitions.items():
                if p not in tasks:
                    tasks[p] = bars.add_task("", records=0)
                bars.update(tasks[p], description=f"orders[{p}]",
                            completed=part.position - part.start, total=max(part.end, part.position) - part.start,
                            records=part.records)

        try:
            outcome = asyncio.run(rebuild(settings, AvroCodec(registry), keep_expired=keep_expired, report=report))
        finally:
            registry.close()
    console.print(f"rebuilt  {outcome.orders:,} orders from {sum(outcome.read.values()):,} records in "
                  f"{outcome.seconds:.1f}s ({outcome.applied:,} applied, {outcome.duplicates:,} duplicates, "
                  f"{outcome.skipped:,} not applicable, {outcome.carried_over:,} carried over); readers waited "
                  f"{outcome.lock_ms:.0f} ms at the swap", soft_wrap=True)
    return outcome
