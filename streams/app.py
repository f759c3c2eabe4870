"""The Faust app: every agent of ``ROUTES`` on RocksDB tables, run by ``shopflow worker``.

Each agent reads raw bytes, decodes them once into the typed record of ``shopflow.schemas`` with the
one codec (a poison record goes to the dead-letter topic and the agent goes on), runs the record
through ``Engine.apply`` against its table, stores the new state and encodes once what it caused.
Agents run at concurrency 1 and scale by partitions: several workers share the partitions of the
same group. Correctness comes from the handlers' idempotency, not from Kafka transactions
(``exactly_once`` is a setting on top). A timer scans the orders this worker owns for passed step
deadlines; table views answer reads from the worker that owns the key.
"""

from __future__ import annotations

import heapq
import logging
import socket
import time
from collections import OrderedDict
from functools import partial
from typing import Any, cast

import faust
from faust.web import Request, Response, View

from shopflow.metrics import register_target
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.deadletter import DeadLetter, dead_letter, decode_record_or_dead_letter
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings
from shopflow.streams import faust_fixes, health, metrics
from shopflow.streams.carts import due_expiries
from shopflow.streams.engine import INVENTORY_ROUTE, ROUTES, Engine, Route
from shopflow.streams.inventory import SettledRows
from shopflow.streams.orders import due_timeouts
from shopflow.streams.payments import SimulatedGateway
from shopflow.streams.runtime import Output, Unexpected
from shopflow.streams.serde import FaustRecord
from shopflow.tables import APP_ID, CARTS_TABLE, INVENTORY_TABLE, ORDERS_TABLE, PAYMENTS_TABLE, TABLES
from shopflow.tables.values import decode, encode, stored_items
from shopflow.topologies.saga import PAYMENT_TIMEOUT, RESERVATION_TIMEOUT
from shopflow.topologies.saga_model import Timeout

log = logging.getLogger("shopflow.worker")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per registry call drowns the worker's log
# Debug records of the Kafka client and of Faust's topics were built (then dropped) for every message:
# 4% of a worker's time flat out (py-spy).
# Faust's worker sets the root logger to DEBUG whatever --loglevel says (faust/worker.py:384-390), so
# their levels are set here.
for _name in ("aiokafka", "faust", "mode"):
    logging.getLogger(_name).setLevel(logging.INFO)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _read(table, key: str) -> bytes | None:
    """One store read: ``table.get`` asks the store whether the key is there, then reads it (two reads)."""
    try:
        return table.data[key.encode()]
    except KeyError:
        return None


class Worker:
    """The app and what its agents share: codec, engine, tables, topics."""

    def __init__(self, settings: Settings, web_port: int | None = None):
        self.settings = settings
        port = web_port or settings.worker_port
        datadir = settings.home / "worker" / str(port)
        datadir.mkdir(parents=True, exist_ok=True)
        # Any: the worker reaches Faust internals its types do not declare (a table's per-partition store,
        # the producer behind the app's) and connects coroutines to its signals.
        self.app: Any = cast(Any, faust.App(
            APP_ID,
            broker=f"kafka://{settings.bootstrap_servers}",
            store="rocksdb://",
            datadir=str(datadir),
            web_host=settings.host,
            web_port=port,
            topic_replication_factor=1,
            topic_partitions=ORDERS_TABLE.partitions,
            table_standby_replicas=settings.standby_replicas,
            processing_guarantee="exactly_once" if settings.exactly_once else "at_least_once",
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            broker_commit_every=1000,
            broker_commit_interval=1.0,
            producer_linger_ms=settings.worker_linger_ms,
            # Failover in seconds, not minutes (Faust's defaults: 60 s session and rebalance timeouts).
            broker_session_timeout=settings.worker_session_timeout_s,
            broker_heartbeat_interval=settings.worker_heartbeat_s,
            broker_rebalance_timeout=settings.worker_rebalance_timeout_s,
            broker_request_timeout=max(20.0, settings.worker_session_timeout_s),
            consumer_group_instance_id=(f"{APP_ID}-{socket.gethostname()}-{port}"
                                        if settings.worker_static_membership else None),
        ))
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_rebalance_complete.connect(self._on_rebalanced)
        # Monotonic time before which the deadline scanner holds off (a rebalance, then the grace).
        self._hold_deadlines_until = float("inf")
        self.codec = AvroCodec(SchemaRegistry(settings.registry_url))
        # The saga's timeouts a deployment overrides (SHOPFLOW_<NAME>_S); unset ones keep the saga's default.
        overrides: dict[Timeout, float | None] = {PAYMENT_TIMEOUT: settings.payment_timeout_s,
                                                   RESERVATION_TIMEOUT: settings.reservation_timeout_s}
        self.engine = Engine(
            timeouts={timeout.name: seconds for timeout, seconds in overrides.items() if seconds is not None},
            gateway=SimulatedGateway(latency_s=settings.gateway_latency_ms / 1000),
            cart_idle_s=settings.cart_idle_s,
            low_stock_threshold=settings.low_stock_threshold,
        )
        # Values are bytes the worker encodes once (tables.values.encode): the same bytes go to RocksDB
        # and to the changelog, where Faust's own serializer would encode every value twice.
        self.tables: dict[str, Any] = {
            spec.name: self.app.Table(spec.name, default=None, partitions=spec.partitions,
                                      key_type=bytes, value_type=bytes, help=spec.doc)
            for spec in TABLES
        }
        self.settled = SettledRows()
        self._topics: dict[str, faust.TopicT] = {}
        # StepTimedOut records already sent, so the scanner does not resend them every tick.
        self._timed_out: OrderedDict[str, None] = OrderedDict()
        # (deadline ms, table, key) of the orders and carts this worker stored with a deadline: the
        # scanner's index.
        self._deadlines: list[tuple[int, str, str]] = []
        self._next_full_scan = time.monotonic()
        for route in ROUTES:
            self._agent(route)
        self.app.timer(interval=settings.deadline_scan_s)(self._scan_deadlines)
        if not settings.exactly_once:
            faust_fixes.hold_commits_at_holes()

            @self.app.timer(interval=1.0)
            async def heal_holes() -> None:
                await faust_fixes.heal_holes(self.app, after_s=5.0)
        self._views()
        health.install(self.app, settings.bootstrap_servers)
        metrics.install(self.app, self.tables)

        @self.app.task
        async def register_metrics() -> None:  # once the worker runs, not when merely built
            register_target(settings, "worker", port)

    def topic(self, name: str) -> faust.TopicT:
        if name not in self._topics:
            self._topics[name] = self.app.topic(name, key_type=bytes, value_type=bytes,
                                                key_serializer="raw", value_serializer="raw")
        return self._topics[name]

    def _agent(self, route: Route) -> None:
        source = self.app.topic(*[t.name for t in route.topics], key_type=bytes, value_type=bytes,
                                key_serializer="raw", value_serializer="raw")
        batch_max, within = self.settings.worker_batch_max, self.settings.worker_batch_within_s

        async def agent(stream):
            if self.settings.exactly_once or batch_max == 1:  # a transaction follows the current event
                async for event in stream.events():
                    await self.process(route, [event])
            else:
                # Faust acks a batch's events once this returns, and commits an acked offset only after
                # flushing the producer: the commit stays behind the delivery of what they caused.
                async for events in stream.take_events(batch_max, within):
                    await self.process(route, events)

        agent.__name__ = agent.__qualname__ = route.agent.replace("-", "_")
        self.app.agent(source, name=route.agent, concurrency=1)(agent)

    async def process(self, route: Route, events) -> None:
        """Apply a batch of records in order: each key read once, each record's writes in the order it
        made them (one changelog partition keeps them in that order, which the inventory relies on),
        every record it caused sent. Table writes name their partition (the records'): Faust's
        ``table[key] = v`` takes it from the stream's current event, which a batch does not have
        (faust-streaming #497), so the store and the changelog are written directly."""
        started = time.perf_counter()
        table = self.tables[route.table.name] if route.table else None
        cache: dict[tuple[int, str], dict | None] = {}
        writes: list[tuple[int, str, bytes | None]] = []
        now = _now_ms()
        for event in events:
            message = event.message
            record_in = FaustRecord(message)
            record, letter = decode_record_or_dead_letter(self.codec, record_in)
            if record is None:
                if letter is not None:
                    await self._dead_letter(letter)
                continue
            p = message.partition
            load = None if table is None else partial(self._load, table, cache, p)
            try:
                result = await self.engine.apply(route, record, load, now, message.offset)
                if route is INVENTORY_ROUTE and table is not None and load is not None:
                    self.settled.track(p, result.writes, load, now,
                                       partial(stored_items, table.data._db_for_partition(p)))
            except Unexpected as exc:
                await self._dead_letter(dead_letter(record_in, exc.reason, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - a fault of ours: Faust would restart the agent, skipping it
                log.exception("%s[%d]@%d failed", message.topic, p, message.offset)
                await self._dead_letter(dead_letter(record_in, "processing-failed", f"{type(exc).__name__}: {exc}"))
                continue
            for key, stored in result.writes.items():
                cache[(p, key)] = stored
                # The inventory's writes go out as made: a sku's value and the row after it must stay in
                # that order for every record. Other entities are one key a record: last value wins.
                writes.append((p, key, encode(stored) if stored is not None and route is INVENTORY_ROUTE else None))
                deadline = stored and (stored.get("deadline_ms") or stored.get("expires_ms"))
                if route.table in (ORDERS_TABLE, CARTS_TABLE) and deadline:
                    heapq.heappush(self._deadlines, (deadline, route.table.name, key))
            for output in result.outputs:
                await self.send(output)
        self._store(table, cache, writes)
        metrics.processing_seconds[route.agent].observe(time.perf_counter() - started)

    @staticmethod
    def _load(table, cache: dict, partition: int, key: str) -> dict | None:
        at = (partition, key)
        if at not in cache:
            cache[at] = decode(table.data._db_for_partition(partition).get(key.encode()))
        return cache[at]

    @staticmethod
    def _store(table, cache: dict, writes: list[tuple[int, str, bytes | None]]) -> None:
        """The batch's writes: a write carrying its own bytes goes out as it is, in its place; any other
        key is written once, with its last value, in its last place."""
        last = {(p, key): i for i, (p, key, _) in enumerate(writes)}
        for i, (p, key, raw) in enumerate(writes):
            if raw is None:
                if last[(p, key)] != i:
                    continue
                stored = cache[(p, key)]
                raw = None if stored is None else encode(stored)
            db = table.data._db_for_partition(p)
            if raw is None:
                db.delete(key.encode())
            else:
                db.put(key.encode(), raw)
                table.data._key_index[key.encode()] = p  # where reads from outside a stream look first
            table.send_changelog(p, key.encode(), raw)

    async def send(self, output: Output) -> None:
        value = self.codec.encode(output.topic, output.record, output.avro)
        metrics.events_out[output.topic.name].inc()
        if self.settings.exactly_once:  # Faust's topic path puts the record in the partition's transaction
            await self.topic(output.topic.name).send(key=output.key.encode(), value=value)
        else:
            # Straight to the producer: Faust's topic path builds futures and callbacks per record that
            # nothing here uses (12% of a worker's time). Its commit still flushes this producer first.
            await self.app.producer.send(output.topic.name, output.key.encode(), value, None, None, None)

    async def _dead_letter(self, letter: DeadLetter) -> None:
        log.warning("dead letter to %s: %s", letter.topic, letter.detail)
        metrics.dead_letters[letter.topic].inc()
        # Faust's send takes no header without a value; the source's own null headers carry nothing.
        headers = [(k, v) for k, v in letter.headers if v is not None]
        await self.topic(letter.topic).send(key=letter.key, value=letter.value, headers=headers)

    async def _on_revoked(self, sender, revoked, **kwargs) -> None:
        """A rebalance starts: every stream of the group pauses until it ends, so deadlines hold."""
        self._hold_deadlines_until = float("inf")
        for tp in revoked:
            if tp.topic in (t.name for t in INVENTORY_ROUTE.topics):
                self.settled.forget(tp.partition)

    async def _on_rebalanced(self, sender, **kwargs) -> None:
        self._hold_deadlines_until = time.monotonic() + self.settings.failover_grace_s
        # A table view finds a key's owner through the producer's metadata of the table's changelog,
        # which it has only once it has written there: a read before the first write answered 500.
        producer = self.app.producer._ensure_producer()
        for table in self.tables.values():
            await producer.partitions_for(table.changelog_topic.get_topic_name())

    async def _scan_deadlines(self) -> None:
        """Send StepTimedOut for passed order deadlines and CartExpired for idle carts: from the index
        kept as the agents store entities, and every ``deadline_full_scan_s`` from the whole tables
        (entities recovered after a rebalance). Nothing is sent during a rebalance and for
        ``failover_grace_s`` after it: a saga held by a failover is not a step that timed out."""
        if time.monotonic() < self._hold_deadlines_until:
            return
        now = _now_ms()
        full = time.monotonic() >= self._next_full_scan
        if full:
            self._next_full_scan = time.monotonic() + self.settings.deadline_full_scan_s
        due_keys: dict[str, set[str]] = {ORDERS_TABLE.name: set(), CARTS_TABLE.name: set()}
        while self._deadlines and self._deadlines[0][0] <= now:
            _, table_name, key = heapq.heappop(self._deadlines)
            due_keys[table_name].add(key)
        idle_ms = int(self.settings.cart_idle_s * 1000)
        for spec, field_name, due in ((ORDERS_TABLE, "deadline_ms", lambda items: due_timeouts(items, now)),
                                      (CARTS_TABLE, "expires_ms", lambda items: due_expiries(items, now, idle_ms))):
            table = self.tables[spec.name]
            if full:
                # Most stored entities have ended (no deadline): skipped without decoding them.
                idle = f'"{field_name}":null'.encode()
                candidates = [(k.decode(), decode(v)) for k, v in table.items() if v is not None and idle not in v]
                candidates = [(k, v) for k, v in candidates if v is not None and v.get(field_name)]
            else:
                candidates = [(k, decode(_read(table, k))) for k in due_keys[spec.name]]
                candidates = [(k, v) for k, v in candidates if v is not None]
            for output in due(candidates):
                if output.event_id in self._timed_out:
                    continue
                self._timed_out[output.event_id] = None
                while len(self._timed_out) > 10_000:
                    self._timed_out.popitem(last=False)
                await self.send(output)

    def _views(self) -> None:
        """GET /orders/{key}, /inventory/{key}, /payments/{key}: answered by the worker owning the key."""
        for spec in (ORDERS_TABLE, INVENTORY_TABLE, PAYMENTS_TABLE, CARTS_TABLE):
            self.app.page(f"/{spec.name}/{{key}}/")(self._table_view(self.tables[spec.name]))
        timeouts = {t.name: self.engine.timeouts.get(t.name, t.seconds) for t in (RESERVATION_TIMEOUT, PAYMENT_TIMEOUT)}
        cart_idle_s = self.engine.cart_idle_s

        class SagaConfig(View):
            """The step timeouts this worker applies (broker replays check they match the scenario's)."""

            async def get(self, request: Request) -> Response:
                return self.json({"timeouts": timeouts, "cart_idle_s": cart_idle_s})

        self.app.page("/saga/config/")(SagaConfig)

    def _table_view(self, table) -> type[View]:
        app = self.app

        class TableView(View):
            @app.table_route(table=table, match_info="key")
            async def get(self, request: Request, key: str) -> Response:
                value = decode(_read(table, key))
                if value is None:
                    return self.json({"error": f"no {table.name} entry {key!r}"}, status=404)
                return self.json(value)

        return TableView


def create_worker(settings: Settings, web_port: int | None = None) -> Worker:
    return Worker(settings, web_port)
