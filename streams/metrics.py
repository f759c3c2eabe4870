"""A Faust worker's metrics: records in and out per topic, batch processing time per agent, commit
time, rebalances, table keys and dead letters, served at ``/metrics`` on the worker's web port.

Faust's own sensor API counts what Faust sees: ``WorkerMonitor`` is the app's monitor (Faust's
``Monitor``, whose numbers ``/stats`` keeps showing) with commits and rebalances added. It replaces
the monitor rather than joining it as one more sensor, so no sensor call is added per record. Records
received are the count Faust's monitor already keeps per topic, read at scrape time, as are table keys
(RocksDB's own estimate, for the partitions this worker holds as active): nothing per record. What
Faust does not see is counted by the worker itself (``streams.app``): a batch's processing time, the
records it sends straight to the producer, its dead letters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from faust.sensors import Monitor
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shopflow.metrics import CONTENT_TYPE_LATEST, LATENCY_BUCKETS, Children, exposition

EVENTS_OUT = Counter("shopflow_events_out_total", "Records the agents produced (dead letters apart), by topic.",
                     ["topic"])
PROCESSING_SECONDS = Histogram("shopflow_processing_seconds", "Time an agent took to apply one batch of records "
                               "(decode, saga step, table writes, sends queued), by agent.", ["agent"],
                               buckets=LATENCY_BUCKETS)
COMMIT_SECONDS = Histogram("shopflow_commit_seconds", "Time of an offset commit that had offsets to commit, "
                           "the producer's flush before it included.", buckets=LATENCY_BUCKETS)
REBALANCES = Counter("shopflow_rebalances_total", "Consumer group rebalances this worker went through.")
DEAD_LETTERS = Counter("shopflow_dead_letters_total", "Records sent to a dead-letter topic, by that topic.",
                       ["topic"])

events_out = Children(EVENTS_OUT)
dead_letters = Children(DEAD_LETTERS)
processing_seconds = Children(PROCESSING_SECONDS)


class WorkerMonitor(Monitor):
    """Faust's monitor, and the worker's metrics from the same calls."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._commit_has_offsets = False

    def on_commit_initiated(self, consumer: Any) -> Any:
        # Faust's commit timer fires every second whether or not anything was acknowledged: those
        # empty rounds take microseconds and would hide the real commits in the histogram.
        self._commit_has_offsets = any(consumer._acked.values())
        return super().on_commit_initiated(consumer)

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        super().on_commit_completed(consumer, state)
        if self._commit_has_offsets:
            COMMIT_SECONDS.observe(time.monotonic() - state)

    def on_rebalance_start(self, app: Any) -> dict:
        REBALANCES.inc()
        return super().on_rebalance_start(app)


class WorkerState(Collector):
    """What the worker keeps anyway, read when scraped: records received per topic (Faust's monitor)
    and keys in the table partitions it holds as active."""

    def __init__(self) -> None:
        self.app: Any = None
        self.tables: Mapping[str, Any] = {}

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        received = CounterMetricFamily("shopflow_events_in", "Records the worker's consumer received, by topic.",
                                       labels=["topic"])
        if self.app is not None:
            for topic, count in list(self.app.monitor.messages_received_by_topic.items()):
                received.add_metric([topic], count)
        yield received
        family = GaugeMetricFamily("shopflow_table_keys", "Keys in the table partitions this worker holds as "
                                   "active (RocksDB's estimate; standby copies not counted), by table.",
                                   labels=["table"])
        for name, table in self.tables.items():
            changelog = table.changelog_topic.get_topic_name()
            stores = getattr(table.data, "_dbs", {})  # partition -> RocksDB, the partitions opened here
            keys = sum(db.property_int_value("rocksdb.estimate-num-keys") or 0
                       for partition, db in list(stores.items())
                       if self.app.assignor.is_active(TP(changelog, partition)))
            family.add_metric([name], keys)
        yield family


# Registered once: a family can be in the registry only once, and one worker runs per process.
_state = WorkerState()
REGISTRY.register(_state)


def install(app: Any, tables: Mapping[str, Any]) -> None:
    """The worker's monitor, its table-keys collector and ``GET /metrics`` on its web server."""
    app.monitor = WorkerMonitor()
    _state.app, _state.tables = app, tables

    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.page("/metrics")(Metrics)
