"""The monitor process (``shopflow monitor``): what ops watch while ShopFlow runs, as Prometheus metrics.

One long-running process, exposed with ``shopflow.metrics.expose(settings, "monitor")`` (a target of
the stack's Prometheus), that registers on the default registry:

- saga health (``streams.saga_health``): the saga's topics read by a consumer of its own (assigned
  partitions, no consumer group joined, nothing committed), and the inventory table's changelog for
  negative stock;
- Kafka Connect's connectors and tasks, one gauge per state (1 for the current one), from its REST API,
  and the records on each dead-letter topic of the catalog (its log end offset: it only grows, so
  ``increase()`` is dead letters arriving): ``streams.monitor_sources``;
- read-model freshness (``streams.freshness``): a catalog heartbeat into the search index, and the
  orders placed meanwhile into ``orders_view``;
- consumer lag, from the one lag engine (``shopflow.lag.LagCollector``), when it is installed.

Restart: the saga's state is rebuilt from the topics on start (all they retain, or the last
``monitor_lookback_s``), not kept in a store of its own: one read of the retained history per start,
the saga metrics registered once it is done (a scrape never sees half a history). The history gives
the orders by state but no violation (an old order's trail may be half gone: orders are kept 30 days,
stock 7), so the violation counter restarts from 0, which Prometheus takes as a reset, never as an
increase; ``shopflow audit`` judges the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg
import httpx
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.registry import Collector
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shopflow.catalog import Catalog, CatalogError
from shopflow.catalog.search import HEARTBEAT_SKU
from shopflow.catalog.search_index import DEFAULT_INDEX
from shopflow.connectors.apply import ConnectClient
from shopflow.db import connect
from shopflow.launch import stop_on_signals
from shopflow.metrics import expose
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings
from shopflow.streams.client import SAGA_TOPICS, TopicReader
from shopflow.streams.freshness import CatalogHeartbeat, Freshness, OrdersViewFreshness
from shopflow.streams.monitor_sources import ConnectorStates, DeadLetters
from shopflow.streams.saga_health import SagaHealth, step_timeouts
from shopflow.streams.stuck_orders import BOARD_LIMIT, BoardPublisher, board_key_of
from shopflow.tables import INVENTORY_TABLE, changelog_topic
from shopflow.topologies.apply import apply_topics
from shopflow.topologies.catalog import CATALOG_PRODUCTS, dead_letter_topics

if TYPE_CHECKING:
    from shopflow.lag.collector import LagCollector

log = logging.getLogger(__name__)


class MonitorError(RuntimeError):
    """The monitor cannot start; the message says what to do."""


class SagaFeed:
    """The saga's topics (Avro, through ``TopicReader``) and the inventory changelog (JSON) into ``health``,
    and the edge's orders into ``orders_view``; from ``since_ms`` (None: the beginning)."""

    def __init__(self, settings: Settings, codec: AvroCodec, health: SagaHealth, orders_view: OrdersViewFreshness,
                 *, topics: Sequence[str] = SAGA_TOPICS, stock_changelog: str | None = None,
                 since_ms: int | None = None):
        self.health, self.orders_view = health, orders_view
        self._last_ts: dict[tuple[str, int], int] = {}  # broker time of the last record read, per saga partition
        self.started_ms = int(time.time() * 1000)
        self.reader = TopicReader(settings, codec, topics, from_end=False)  # assigned from each partition's start
        config = {"bootstrap.servers": settings.bootstrap_servers, "enable.auto.commit": False,
                  "group.id": f"shopflow-monitor-{self.started_ms}"}  # never joined: partitions are assigned
        self.stock = Consumer(config)
        # Offsets are asked of a consumer reading nothing: an assigned one answers each ask in ~0.3 s.
        self._meta = Consumer(config)
        self._start: dict[tuple[str, int], int] = {}
        self._ends: dict[tuple[str, int], int] = {}
        assigned = self.reader.consumer.assignment()
        starts = [TopicPartition(tp.topic, tp.partition, self._watermarks(tp)[0]) for tp in assigned]
        if since_ms is not None:
            found = self._meta.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, since_ms) for tp in assigned], timeout=10)
            starts = [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else self._watermarks(tp)[1])
                      for tp in found]  # -1: nothing that recent, start at the end
        self.reader.consumer.assign(self._track(starts))
        self._saga_partitions = set(self._start)
        if stock_changelog is not None:
            meta = self._meta.list_topics(stock_changelog, timeout=10).topics.get(stock_changelog)
            if meta is not None and meta.error is None:
                self.stock.assign(self._track([TopicPartition(stock_changelog, p, self._watermarks(
                    TopicPartition(stock_changelog, p))[0]) for p in meta.partitions]))

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        return self._meta.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)

    def _track(self, starts: list[TopicPartition]) -> list[TopicPartition]:
        """Note where each partition starts and where it ended when the monitor started (its history)."""
        for tp in starts:
            self._start[(tp.topic, tp.partition)] = tp.offset
            self._ends[(tp.topic, tp.partition)] = self._watermarks(tp)[1]
        return starts

    def _positions(self) -> dict[tuple[str, int], int]:
        positions = dict(self._start)  # a partition not read from yet is where it starts
        for consumer in (self.reader.consumer, self.stock):
            assigned = consumer.assignment()
            for tp in consumer.position(assigned) if assigned else []:
                if tp.offset >= 0:
                    positions[(tp.topic, tp.partition)] = tp.offset
        return positions

    def progress(self) -> tuple[int, int]:
        """Records read of those there were at the start, to tell the catching up from the live reading."""
        now = self._positions()
        total = sum(max(0, self._ends[k] - self._start[k]) for k in self._ends)
        done = sum(min(max(0, now[k] - self._start[k]), self._ends[k] - self._start[k])
                   for k in self._ends if self._ends[k] > self._start[k])
        return done, total

    def caught_up(self) -> bool:
        done, total = self.progress()
        return done >= total

    def read_up_to_ms(self) -> int:
        """The event time up to which every saga partition has been read: the least recent record read of the
        partitions still behind their end at the start (0 while one has given nothing), now once none is."""
        positions = self._positions()
        behind = [k for k in self._saga_partitions if positions[k] < self._ends[k]]
        return min((self._last_ts.get(k, 0) for k in behind), default=int(time.time() * 1000))

    def poll(self, timeout_s: float = 0.5) -> int:
        now_s = time.time()
        n = 0
        for msg, record, value in self.reader.poll_messages(timeout_s):
            written_ms = msg.timestamp()[1]
            live = written_ms >= self.started_ms
            self.health.observe(record, value, live=live, topic=msg.topic() or "")
            self._last_ts[(msg.topic() or "", msg.partition() or 0)] = written_ms
            if live:  # an order of the history was not timed live
                if record == "PlaceOrder":
                    self.orders_view.command(value["order_id"], value["occurred_at"], now_s)
                elif record == "OrderPlaced":
                    self.orders_view.placed(value["order_id"], value["event_id"])
            n += 1
        for msg in self.stock.consume(5000, 0 if n else 0.05):
            key, raw = msg.key(), msg.value()
            if msg.error() is None and key is not None:
                self.health.observe_stock(key.decode(), json.loads(raw) if raw else None,
                                          live=msg.timestamp()[1] >= self.started_ms)
                n += 1
        return n

    def close(self) -> None:
        self.reader.close()
        self.stock.close()
        self._meta.close()


def _lag_collector(settings: Settings) -> LagCollector | None:
    """The lag engine's collector (shopflow/lag), sampling in a thread of its own; None without that engine."""
    try:
        from shopflow.lag.collector import LagCollector
    except ImportError:  # a checkout from before the lag engine
        log.warning("shopflow.lag is not installed: no consumer lag metrics from this monitor")
        return None
    return LagCollector(settings)


class Monitor:
    """Every part wired together; ``run(stop)`` until ``stop`` is set. Topic, index and sku parameters
    are for tests on throwaway resources; ``registry`` too (the process uses the default one)."""

    def __init__(self, settings: Settings, *, registry: CollectorRegistry = REGISTRY,
                 saga_topics: Sequence[str] = SAGA_TOPICS,
                 stock_changelog: str | None = changelog_topic(INVENTORY_TABLE),
                 dead_letter: Sequence[str] | None = None, since_ms: int | None = None, heartbeat: bool = True,
                 catalog_topic: str = CATALOG_PRODUCTS.name, search_index: str = DEFAULT_INDEX,
                 heartbeat_sku: str = HEARTBEAT_SKU, lag: bool = True, board_key: str | None = None):
        self.settings, self.registry = settings, registry
        self.codec = AvroCodec(SchemaRegistry(settings.registry_url))
        self.health = SagaHealth(step_timeouts(settings), settle_ms=int(settings.monitor_settle_s * 1000),
                                 stuck_grace_ms=int(settings.monitor_stuck_grace_s * 1000))
        self.freshness = Freshness()
        self.orders_view = OrdersViewFreshness(self.freshness)
        self.feed = SagaFeed(settings, self.codec, self.health, self.orders_view, topics=saga_topics,
                             stock_changelog=stock_changelog, since_ms=since_ms)
        self.connect = ConnectClient(settings.connect_url, timeout=10)
        self.connectors = ConnectorStates(self.connect)
        self.dead_letters = DeadLetters(settings.bootstrap_servers, dead_letter if dead_letter is not None
                                        else [t.name for t in dead_letter_topics()])
        self.heartbeat = heartbeat
        self.catalog_topic, self.search_index, self.heartbeat_sku = catalog_topic, search_index, heartbeat_sku
        self.lag = _lag_collector(settings) if lag else None
        # Stuck orders with their paths, for the console of the same deployment (board_key_of).
        self.board = BoardPublisher(settings.redis_url, board_key or board_key_of(settings))
        collectors: list[Collector] = [self.connectors, self.dead_letters, self.freshness]
        for collector in collectors + ([self.lag] if self.lag is not None else []):
            registry.register(collector)
        self.saga_registered = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """The saga feed in this thread, the periodic reads and the heartbeat in another; until ``stop``."""
        side = threading.Thread(target=lambda: asyncio.run(self._side(stop)), name="monitor-periodic", daemon=True)
        side.start()
        next_sweep = 0.0
        try:
            while not stop.is_set():
                self.feed.poll(0.5)
                if time.monotonic() >= next_sweep:  # every second, so reading a long history stays bounded too
                    self.health.sweep(self.feed.read_up_to_ms())
                    next_sweep = time.monotonic() + 1.0
                    if self.saga_registered.is_set():  # a list from half a history would mislead
                        self.board.publish(*self.health.stuck_orders(int(time.time() * 1000), BOARD_LIMIT))
                if not self.saga_registered.is_set() and self.feed.caught_up():
                    self.registry.register(self.health)
                    self.saga_registered.set()
                    log.info("saga history read (%d orders tracked): saga metrics registered",
                             self.health.snapshot(int(time.time() * 1000))["tracked"])
        finally:
            stop.set()  # the side thread ends with this one, whatever ended it
            side.join(30)
            self.feed.close()
            self.dead_letters.close()
            self.connect.close()
            self.board.close()
            if self.lag is not None:
                self.lag.close()
            for collector in (self.connectors, self.dead_letters, self.freshness, self.health, self.lag):
                with contextlib.suppress(KeyError):  # never registered
                    if collector is not None:
                        self.registry.unregister(collector)

    async def _side(self, stop: threading.Event) -> None:
        tasks = [asyncio.create_task(self._periodic(stop))]
        if self.heartbeat:
            tasks.append(asyncio.create_task(self._heartbeats(stop)))
        await asyncio.to_thread(stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _periodic(self, stop: threading.Event) -> None:
        conn: asyncpg.Connection | None = None
        try:
            while not stop.is_set():
                await asyncio.to_thread(self.connectors.refresh)
                await asyncio.to_thread(self.dead_letters.refresh)
                try:
                    conn = conn if conn is not None and not conn.is_closed() else await connect(self.settings)
                    await self.orders_view.check(conn)
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("orders_view freshness not read: %s (is PostgreSQL up and migrated?)", exc)
                    conn = None
                await asyncio.to_thread(stop.wait, self.settings.monitor_interval_s)
        finally:
            if conn is not None:
                await conn.close()

    async def _heartbeats(self, stop: threading.Event) -> None:
        interval, bound = self.settings.freshness_interval_s, self.settings.freshness_bound_s
        catalog: Catalog | None = None
        beat: CatalogHeartbeat | None = None
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    if catalog is None:
                        catalog = await Catalog.open(self.settings, self.codec, topic=self.catalog_topic,
                                                     cache=False, pool_size=1)
                        beat = CatalogHeartbeat(catalog, self.settings.search_url, self.freshness,
                                                index=self.search_index, sku=self.heartbeat_sku,
                                                give_up_s=max(60.0, 20 * bound))
                    assert beat is not None
                    seconds = await beat.beat()
                    log.debug("catalog -> search: %.3f s", seconds)
                except (TimeoutError, CatalogError, httpx.HTTPError, OSError, asyncpg.PostgresError) as exc:
                    log.warning("catalog heartbeat: %s", exc)
                await asyncio.to_thread(stop.wait, max(0.0, interval - (time.monotonic() - started)))
        finally:
            if beat is not None:
                await beat.close()
            if catalog is not None:
                await catalog.close()


def main(settings: Settings, metrics_port: int | None = None) -> None:
    """The process entry point: read the saga's history (a progress bar), then watch until SIGINT or SIGTERM.
    MonitorError (exit status 1, not 0) when the watching thread failed: its target is gone with it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request to Connect, the index, the registry
    stop = stop_on_signals()
    lookback = settings.monitor_lookback_s
    try:
        # The topics it reads: on a fresh broker nothing else may have created them yet.
        apply_topics(AdminClient({"bootstrap.servers": settings.bootstrap_servers}))
        monitor = Monitor(settings, since_ms=int((time.time() - lookback) * 1000) if lookback else None)
    except KafkaException as exc:
        raise MonitorError(f"Kafka at {settings.bootstrap_servers} cannot be read ({exc.args[0].str()}); "
                           "is the stack up? `shopflow stack status`") from None
    port = expose(settings, "monitor", metrics_port)
    console = Console()
    console.print(f"monitor: metrics on http://{settings.host}:{port}/metrics")
    failed: list[Exception] = []

    def watch() -> None:
        try:
            monitor.run(stop)
        except Exception as exc:  # noqa: BLE001 - any: the process must not end as if stopped on purpose
            log.exception("the monitor stopped on an error")
            failed.append(exc)

    worker = threading.Thread(target=watch, name="monitor")
    worker.start()
    with Progress(TextColumn("reading the saga's history"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("history", total=None)
        while worker.is_alive() and not monitor.saga_registered.wait(0.5):
            done, total = monitor.feed.progress()
            bar.update(task, completed=done, total=total)
    if monitor.saga_registered.is_set():
        console.print(f"monitor: saga history read in {time.time() - monitor.feed.started_ms / 1000:.1f}s; watching")
    worker.join()
    if failed:
        raise MonitorError(f"the monitor stopped on an error: {failed[0]!r} (the trace is in the log above); "
                           "its metrics are gone and ShopflowMonitorDown will fire: fix the cause, then "
                           "start `shopflow monitor` again")
