"""Consumer lag as Prometheus metrics: ``LagCollector``, registered by the monitor process.

A scrape must stay quick while a sample reads the broker (and records, for time lags), so a thread
of the collector samples every ``settings.lag_interval_s`` and a scrape only turns the latest report
into metrics. The windows behind the statuses live in that thread's ``LagMonitor``. A partition the
group never committed has no lag series at all (no value is better than a made-up one, kafka-lag-
exporter #45); its status says OK. Statuses are enum style: one series per status, 1 for the current.

A report older than ``stale_after_s`` (the broker unreachable, sampling failing) is not served:
yesterday's lag of 0 would look healthy. Only the sample timestamp stays, which is what the
ShopflowConsumerLagNotSampled alert reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shopflow.lag.evaluate import Status
from shopflow.lag.monitor import LagMonitor, LagReport
from shopflow.lag.offsets import LagError
from shopflow.settings import Settings

log = logging.getLogger(__name__)

PARTITION = ["group", "topic", "partition"]
SAMPLED_AT = "shopflow_consumer_lag_sample_timestamp_seconds"
STALE_INTERVALS = 3
# A sample that succeeds may still take seconds (a broker request may wait 10 s, reads 3 s a round): a
# report is not called stale before this, else a slow sampler would make the series (and alerts) flicker.
STALE_MIN_S = 30.0


def _families() -> dict[str, GaugeMetricFamily]:
    return {f.name: f for f in (
        GaugeMetricFamily("shopflow_consumer_lag", "Records a consumer group has yet to process in a partition: "
                          "the offsets from its commit to the last stable offset, so transaction markers and aborted "
                          "records among them count too; 0 when only those are left.", labels=PARTITION),
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
        GaugeMetricFamily(SAMPLED_AT, "When consumer lag was last sampled from the broker (stale when sampling "
                          "fails: the lag series are then left out)."),
    )}


def metrics(report: LagReport | None, stale: bool = False) -> list[Metric]:
    """The metric families for ``report`` (None: not sampled yet, the families empty); of a ``stale``
    report, only its time."""
    fams = _families()
    if report is None:
        return list(fams.values())
    fams[SAMPLED_AT].add_metric([], report.at)
    if stale:
        return list(fams.values())
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
        self.stale_after_s = max(STALE_INTERVALS * self.interval_s, STALE_MIN_S)
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
        report = self.report
        stale = report is not None and time.time() - report.at > self.stale_after_s
        return iter(metrics(report, stale))

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
            except Exception as exc:  # a bug or a client error not foreseen: the thread must not die of it
                if repr(exc) != self.error:
                    log.exception("consumer lag: sampling failed, trying again every %gs", self.interval_s)
                self.error = repr(exc)
            self._stop.wait(self.interval_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.monitor.close()
