"""The monitor (streams/monitor.py) over the real stack: its metrics follow what really happens.

The monitor runs in a thread with a registry of its own. Scenarios that need a state the saga never
gets into (a payment that never answers, a double charge) write the records themselves to throwaway
topics standing for the saga's (the monitor takes topic names), encoded as the agents encode them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from catalog_pipeline import (
    RunningIndexer,
    apply_outbox_connector,
    drop_replication,
    outbox_topic,
    throwaway_index,
    unique,
)
from polling import eventually
from prometheus_client import CollectorRegistry

from shopflow.schemas.orders import OrderPlaced
from shopflow.schemas.payments import PaymentRequested, PaymentSucceeded
from shopflow.schemas.records import Money, OrderLine, datetime_of_ms
from shopflow.settings import Settings
from shopflow.streams.client import SagaClient, now_ms
from shopflow.streams.freshness import CATALOG_TO_SEARCH, COMMAND_TO_ORDERS_VIEW
from shopflow.streams.monitor import Monitor
from shopflow.topologies.catalog import ORDERS, PAYMENT_REQUESTS, PAYMENT_RESULTS

pytestmark = pytest.mark.integration

FAST = {"monitor_interval_s": 0.5, "monitor_settle_s": 5.0, "monitor_stuck_grace_s": 0.5,
        "freshness_interval_s": 0.5}


class Watched:
    """A running monitor and the registry it exports to."""

    def __init__(self, monitor: Monitor, registry: CollectorRegistry):
        self.monitor, self.registry = monitor, registry

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def monitor_factory(stack) -> Iterator:
    """``monitor_factory(settings=None, **monitor_options)``: a Monitor running in a thread (no heartbeat,
    no lag, no dead letters, the live saga topics from now on, unless told otherwise)."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start(settings: Settings | None = None, **options) -> Watched:
        registry = CollectorRegistry()
        # A board of its own: never over the stuck orders a real monitor publishes for its console.
        options = {"heartbeat": False, "lag": False, "dead_letter": [], "stock_changelog": None,
                   "since_ms": now_ms(), "board_key": f"test-monitor:{uuid.uuid4().hex}", **options}
        monitor = Monitor(settings or stack.model_copy(update=FAST), registry=registry, **options)
        stop = threading.Event()
        thread = threading.Thread(target=monitor.run, args=(stop,), name="test-monitor", daemon=True)
        thread.start()
        running.append((stop, thread))
        eventually(monitor.saga_registered.is_set, 30, what="the monitor's saga history read")
        return Watched(monitor, registry)

    yield start
    for stop, thread in running:
        stop.set()
        thread.join(60)


@pytest.fixture
def saga_topics(topic_factory) -> dict[str, str]:
    """Throwaway topics standing for the saga's: real topic name -> throwaway name."""
    return {t.name: topic_factory(t.name, partitions=2) for t in (ORDERS, PAYMENT_REQUESTS, PAYMENT_RESULTS)}


@pytest.fixture
def write(producer, codec, saga_topics):
    """``write(record)``: the record, encoded for its real topic, produced to that topic's stand-in."""

    def send(record) -> None:
        topic = next(t for t in (ORDERS, PAYMENT_REQUESTS, PAYMENT_RESULTS) if type(record) in t.values)
        producer.produce(saga_topics[topic.name], key=record.order_id.encode(), value=codec.encode(topic, record))
        producer.flush(10)

    return send


def order_placed(order_id: str) -> OrderPlaced:
    return OrderPlaced(str(uuid.uuid4()), order_id, "u-1", (OrderLine("SKU-A", 1, Money(1999, "EUR")),),
                       Money(1999, "EUR"), "tok_approve", datetime_of_ms(now_ms()))


def test_orders_placed_through_a_worker_show_up_by_state_and_compensations_by_reason(stack, saga_workers,
                                                                                      codec, monitor_factory):
    run = uuid.uuid4().hex[:8]
    watched = monitor_factory()
    client = SagaClient(stack, codec)
    client.seed_stock({f"{run}-A": 100})

    for n in range(5):
        client.place(f"{run}-ok-{n}", [(f"{run}-A", 1, 1000)])
    for n in range(3):
        client.place(f"{run}-none-{n}", [(f"{run}-SOLD-OUT", 1, 1000)])
    client.close()

    def counted() -> bool:
        assert (watched.value("shopflow_orders", state="CONFIRMED") or 0) >= 5
        assert (watched.value("shopflow_compensations_total", reason="OUT_OF_STOCK") or 0) >= 3
        return True

    eventually(counted, 60, what="5 confirmed orders and 3 cancelled out of stock")
    assert watched.value("shopflow_order_completion_seconds_count", outcome="CONFIRMED") >= 5
    assert watched.value("shopflow_invariant_violations_total", rule="double_charge") == 0


def test_an_order_whose_payment_never_answers_becomes_stuck_past_its_deadline(stack, saga_topics, write,
                                                                             monitor_factory):
    settings = stack.model_copy(update={**FAST, "payment_timeout_s": 2.0})
    watched = monitor_factory(settings, saga_topics=list(saga_topics.values()))
    placed = order_placed(unique("stuck"))

    write(placed)
    write(PaymentRequested(str(uuid.uuid4()), placed.order_id, "u-1", placed.total, "tok_approve",
                           datetime_of_ms(now_ms())))

    eventually(lambda: watched.value("shopflow_orders", state="RESERVED") == 1, 30, what="the order RESERVED")
    assert watched.value("shopflow_orders_stuck") == 0  # within its deadline
    eventually(lambda: watched.value("shopflow_orders_stuck") == 1, 30, what="the order stuck")
    assert watched.value("shopflow_oldest_open_order_age_seconds") >= 2.0


def test_a_double_charge_increments_the_violation_counter(stack, saga_topics, write, monitor_factory):
    watched = monitor_factory(saga_topics=list(saga_topics.values()))
    placed = order_placed(unique("charged"))

    write(placed)
    for payment_id in ("pay-1", "pay-2"):
        write(PaymentSucceeded(str(uuid.uuid4()), placed.order_id, payment_id, placed.total, datetime_of_ms(now_ms())))

    eventually(lambda: watched.value("shopflow_invariant_violations_total", rule="double_charge") == 1, 30,
               what="one double charge counted")


def test_a_double_charge_in_the_history_read_at_start_is_not_counted_again(stack, saga_topics, write,
                                                                          monitor_factory):
    # Given a double charge written before the monitor starts (what a restarted monitor reads again)
    placed = order_placed(unique("history"))
    write(placed)
    for payment_id in ("pay-1", "pay-2"):
        write(PaymentSucceeded(str(uuid.uuid4()), placed.order_id, payment_id, placed.total, datetime_of_ms(now_ms())))

    # When a monitor reads the topics from their start
    watched = monitor_factory(saga_topics=list(saga_topics.values()), since_ms=None)

    # Then the order is in its state, but its violation (counted by the monitor that saw it live) is not again
    assert watched.value("shopflow_orders", state="PENDING") == 1
    assert watched.value("shopflow_invariant_violations_total", rule="double_charge") == 0


def test_dead_letters_are_counted_per_topic(stack, topic_factory, producer, monitor_factory):
    dlq = topic_factory("monitor") + ".dlq"
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    admin.create_topics([NewTopic(dlq, 1, 1)])[dlq].result(timeout=30)
    try:
        watched = monitor_factory(dead_letter=[dlq])
        for n in range(3):
            producer.produce(dlq, value=f"poison {n}".encode())
        producer.flush(10)

        eventually(lambda: watched.value("shopflow_dead_letter_records", topic=dlq) == 3, 30,
                   what="3 dead letters counted")
    finally:
        admin.delete_topics([dlq])[dlq].result(timeout=30)


@pytest.fixture
def broken_connector(stack, tmp_path: Path) -> Iterator[str]:
    """A copy of the outbox connector whose task fails at start (PostgreSQL has no "decoderbufs" plugin),
    with a slot and publication of its own; deleted afterwards (tests/catalog/test_connector_errors.py)."""
    import asyncpg

    from shopflow.connectors.apply import CONNECTORS_DIR, ConnectClient, Connector

    doc = json.loads((CONNECTORS_DIR / "catalog-outbox.json").read_text())
    name = unique("catalog-outbox-broken")
    ident = name.replace("-", "_")
    client = ConnectClient(stack.connect_url)
    client.put(Connector(name, {**doc["config"], "slot.name": ident, "publication.name": ident,
                                "plugin.name": "decoderbufs"}))
    yield name
    client.delete(name)
    client.close()

    async def drop() -> None:
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            await drop_replication(conn, ident)
        finally:
            await conn.close()

    asyncio.run(drop())


def test_a_broken_connector_shows_failed(stack, broken_connector, monitor_factory):
    watched = monitor_factory()

    eventually(lambda: watched.value("shopflow_connect_task_state", connector=broken_connector, task="0",
                                     state="FAILED") == 1, 60, what="the broken connector's task FAILED")
    assert watched.value("shopflow_connect_task_state", connector=broken_connector, task="0", state="RUNNING") == 0
    assert watched.value("shopflow_connect_up") == 1


@pytest.fixture
async def catalog_pipeline(stack, topic_factory, admin) -> AsyncIterator[tuple[str, str]]:
    """The outbox connector, a throwaway catalog topic and index, and the indexer between them."""
    (await asyncio.to_thread(apply_outbox_connector, stack)).close()
    async with outbox_topic(stack, topic_factory, admin, "monitor-catalog") as topic:
        with throwaway_index(stack, "monitor-products") as search:
            indexer = RunningIndexer.start(stack, topic=topic, index=search.index)
            try:
                yield topic, search.index
            finally:
                indexer.close()


def test_freshness_is_measured_on_both_paths_and_is_seconds_at_most_on_the_idle_stack(
        stack, saga_workers, codec, catalog_pipeline, pg_schema_factory, monitor_factory):
    from shopflow.streams.order_projection import OrderProjection

    topic, index = catalog_pipeline
    settings = stack.model_copy(update={**FAST, "postgres_schema": pg_schema_factory("monitor")})
    group = unique("test-monitor-projection")
    _commit_at_end(stack, group, ORDERS.name)  # the projection reads only what comes from now on
    projection = _InThread(OrderProjection(settings, codec, group_id=group).run)
    try:
        watched = monitor_factory(settings, heartbeat=True, catalog_topic=topic, search_index=index,
                                  heartbeat_sku=unique("HEARTBEAT").upper())
        client = SagaClient(stack, codec)
        for _ in range(3):
            client.place(unique("fresh"), [(unique("SKU"), 1, 1000)])  # cancelled out of stock: rows all the same
        client.close()

        def measured() -> bool:
            for path in (CATALOG_TO_SEARCH, COMMAND_TO_ORDERS_VIEW):
                assert (watched.value("shopflow_freshness_seconds_count", path=path) or 0) >= 3, path
            return True

        eventually(measured, 90, what="3 measurements of each path")
        for path in (CATALOG_TO_SEARCH, COMMAND_TO_ORDERS_VIEW):
            count = watched.value("shopflow_freshness_seconds_count", path=path)
            mean = watched.value("shopflow_freshness_seconds_sum", path=path) / count
            print(f"{path}: {count:.0f} measurements, mean {mean:.3f}s, last "
                  f"{watched.value('shopflow_freshness_last_seconds', path=path):.3f}s")
            assert mean < 3.0, path
            assert watched.value("shopflow_freshness_last_seconds", path=path) < 5.0, path
    finally:
        projection.close()


def _commit_at_end(stack: Settings, group: str, topic: str) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": stack.bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.commit(offsets=[TopicPartition(topic, p, consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10)[1]) for p in partitions], asynchronous=False)
    finally:
        consumer.close()


class _InThread:
    """An async ``run(stop)`` on an event loop of its own, stopped by ``close()``."""

    def __init__(self, run) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._main, args=(run,), daemon=True)
        self.thread.start()

    def _main(self, run) -> None:
        try:
            self.loop.run_until_complete(run(self.stop))
        except BaseException as exc:  # surfaced by close()
            self.errors.append(exc)

    def close(self) -> None:
        deadline = time.monotonic() + 30
        while self.thread.is_alive() and time.monotonic() < deadline:
            self.loop.call_soon_threadsafe(self.stop.set)
            self.thread.join(1)
        assert not self.errors, self.errors
