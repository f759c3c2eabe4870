"""Consumer lag as Prometheus metrics: ``LagCollector``, registered by the monitor process.

A scrape must stay quick while a sample reads the broker (and records, for time lags), so a thread
of the collector samples every ``settings.lag_interval_s`` and a scrape only turns the latest report
into metrics. The windows behind the statuses live in that thread's ``LagMonitor``. A partition the
group never committed has no lag series at all (no value is better than a made-up one, kafka-lag-
exporter #45); its status says OK. Statuses are enum style: one series per status, 1 for the current.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shopflow.lag.evaluate import Status
from shopflow.lag.monitor import LagMonitor, LagReport
from shopflow.lag.offsets import LagError
from shopflow.settings import Settings

log = logging.getLogger(__name__)

PARTITION = ["group", "topic", "partition"]


def _families() -> dict[str, GaugeMetricFamily]:
    return {f.name: f for f in (
        GaugeMetricFamily("shopflow_consumer_lag", "Records a consumer group has yet to process in a partition, "
                          "counted to the last stable offset (transaction markers and aborted records excluded).",
                          labels=PARTITION),
        GaugeMetricFamily("shopflow_consumer_lag_seconds", "Age of the next record a consumer group has to "
                          "process in a partition (0 when caught up).", labels=PARTITION),
        GaugeMetricFamily("shopflow_consumer_lag_estimated", "1 when the partition's lag in seconds is an "
                          "estimate (the next record was removed by retention or could not be read).",
                          labels=PARTITION),
        GaugeMetricFamily("shopflow_consumer_partition_status", "1 for the partition's current status over "
                          "the sliding window (Burrow's rules: OK, WARN, REWIND, STALL, STOP, ERR), 0 for the others.",
                          labels=[*PARTITION, "status"]),
        GaugeMetricFamily("shopflow_consumer_group_status", "1 for the consumer group's current status (its "
                          "worst partition's), 0 for the others.", labels=["group", "status"]),
        GaugeMetricFamily("shopflow_consumer_group_members", "Members of the consumer group.", labels=["group"]),
        GaugeMetricFamily("shopflow_consumer_lag_sample_timestamp_seconds", "When consumer lag was last "
                          "sampled from the broker (stale when the broker cannot be reached)."),
    )}


def metrics(report: LagReport | None) -> list[Metric]:
    """The metric families for ``report`` (None: not sampled yet, the families empty)."""
    fams = _families()
    if report is None:
        return list(fams.values())
    fams["shopflow_consumer_lag_sample_timestamp_seconds"].add_metric([], report.at)
    for g in report.groups:
        fams["shopflow_consumer_group_members"].add_metric([g.group], len(g.members))
        for status in Status:
            fams["shopflow_consumer_group_status"].add_metric([g.group, status], float(status is g.status))
        for p in g.partitions:
            labels = [g.group, p.topic, str(p.partition)]
            if p.lag is not None:
                fams["shopflow_consumer_lag"].add_metric(labels, p.lag)
            if p.lag_s is not None:
                fams["shopflow_consumer_lag_seconds"].add_metric(labels, p.lag_s)
                fams["shopflow_consumer_lag_estimated"].add_metric(labels, float(p.estimated))
            for status in Status:
                fams["shopflow_consumer_partition_status"].add_metric([*labels, status], float(status is p.status))
    return list(fams.values())


class LagCollector(Collector):
    """``REGISTRY.register(LagCollector(settings))``; ``close()`` stops its sampler."""

    def __init__(self, settings: Settings, start: bool = True):
        self.interval_s = settings.lag_interval_s
        self.monitor = LagMonitor(settings, client_id="shopflow-lag-metrics")
        self.report: LagReport | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        if start:
            self._thread.start()

    def describe(self) -> Iterator[Metric]:
        # Without it, registering would call collect() to learn the names.
        return iter(metrics(None))

    def collect(self) -> Iterator[Metric]:
        return iter(metrics(self.report))

    def sample_once(self) -> LagReport:
        self.report = self.monitor.sample()
        return self.report

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
                if self.error is not None:
                    log.info("consumer lag: sampling again")
                self.error = None
            except LagError as exc:
                if str(exc) != self.error:  # once per outage, not every interval
                    log.warning("consumer lag: %s", exc)
                self.error = str(exc)
            self._stop.wait(self.interval_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.monitor.close()
