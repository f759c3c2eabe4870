"""The monitor's collectors of what other servers report: Kafka Connect's connector and task states (its
REST API, ``connectors.apply.ConnectClient``) and the records each dead-letter topic has received (its
log end offsets). Each is refreshed by the monitor's periodic loop (``streams.monitor``) and answers a
scrape from the values of its last refresh, so a slow server never slows a scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import httpx
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shopflow.connectors.apply import CONNECT_STATES, ConnectClient, ConnectorError

log = logging.getLogger(__name__)


class ConnectorStates(Collector):
    """Every connector's and task's state, as read by the last ``refresh``."""

    def __init__(self, client: ConnectClient):
        self.client = client
        self.up = False
        self.statuses: dict[str, dict] = {}

    def refresh(self) -> None:
        try:
            statuses = {name: self.client.status(name) for name in self.client.names()}
        except (ConnectorError, httpx.HTTPError) as exc:
            log.warning("connector states not read: %s", exc)
            self.up, self.statuses = False, {}
            return
        self.up, self.statuses = True, {n: s for n, s in statuses.items() if s is not None}

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("shopflow_connect_up", "1 when Kafka Connect's REST API answered the monitor's "
                                "last read.", value=int(self.up))
        connectors = GaugeMetricFamily("shopflow_connect_connector_state", "A connector's state (1 for the "
                                       "current one, 0 for the others).", labels=["connector", "state"])
        tasks = GaugeMetricFamily("shopflow_connect_task_state", "A connector task's state (1 for the current "
                                  "one, 0 for the others).", labels=["connector", "task", "state"])
        for name, status in sorted(self.statuses.items()):
            current = status.get("connector", {}).get("state")
            for state in CONNECT_STATES:
                connectors.add_metric([name, state], int(state == current))
            for task in status.get("tasks", []):
                for state in CONNECT_STATES:
                    tasks.add_metric([name, str(task.get("id")), state], int(state == task.get("state")))
        yield connectors
        yield tasks


class DeadLetters(Collector):
    """The records each dead-letter topic has received (its log end offset), as read by the last ``refresh``."""

    def __init__(self, bootstrap_servers: str, topics: Sequence[str]):
        self.topics = list(topics)
        self.records: dict[str, int] = {}
        self.consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "shopflow-monitor-watermarks",
                                  "enable.auto.commit": False})

    def refresh(self) -> None:
        records: dict[str, int] = {}
        try:
            known = self.consumer.list_topics(timeout=10).topics
            for topic in self.topics:
                meta = known.get(topic)
                if meta is None or meta.error is not None:
                    continue  # not created yet: nothing dead-lettered
                records[topic] = sum(self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                                     for p in meta.partitions)
        except Exception as exc:  # noqa: BLE001 - a KafkaException: keep the last values, say why
            log.warning("dead-letter topics not read: %s", exc)
            return
        self.records = records

    def close(self) -> None:
        self.consumer.close()

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("shopflow_dead_letter_records", "Records a dead-letter topic has received "
                                  "(its log end offset).", labels=["topic"])
        for topic, n in sorted(self.records.items()):
            gauge.add_metric([topic], n)
        yield gauge
