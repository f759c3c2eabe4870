"""Talking to the running saga from outside: place orders, seed stock, follow orders to their end.

Used by ``make demo``, the end-to-end test, the saga benchmark and ``shopflow audit``; the edge
produces its commands the same way. Producers place keys with murmur2 (``murmur2_random``), as
the Java clients and Faust's producer do, so a key lands on the same partition whoever writes it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from shopflow import kafka
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.inventory import StockAdjusted
from shopflow.schemas.orders import CancelOrder, PlaceOrder
from shopflow.schemas.records import Money, OrderLine, datetime_of_ms
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings
from shopflow.streams.audit import plain
from shopflow.streams.runtime import Output
from shopflow.tables import TableSpec, changelog_topic
from shopflow.topologies.catalog import (
    ORDER_COMMANDS,
    ORDERS,
    PAYMENT_REQUESTS,
    PAYMENT_RESULTS,
    STOCK_REQUESTS,
    STOCK_RESULTS,
)

SAGA_TOPICS = tuple(
    t.name for t in (ORDER_COMMANDS, ORDERS, STOCK_REQUESTS, STOCK_RESULTS, PAYMENT_REQUESTS, PAYMENT_RESULTS)
)


def producer_config(settings: Settings, **tuning: object) -> dict[str, object]:
    """Every ShopFlow producer's configuration (``shopflow.kafka``), lingering 5 ms unless told otherwise."""
    return kafka.producer_config(settings.bootstrap_servers, "shopflow-client", **{"linger.ms": 5, **tuning})


def now_ms() -> int:
    return int(time.time() * 1000)


class SagaClient:
    def __init__(self, settings: Settings, codec: AvroCodec | None = None):
        self.settings = settings
        self.codec = codec or AvroCodec(SchemaRegistry(settings.registry_url))
        self.producer = Producer(producer_config(settings))
        self._errors: list[str] = []

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self._errors.append(str(err))

    def send(self, output: Output) -> None:
        value = self.codec.encode(output.topic, output.record)
        while True:
            try:
                self.producer.produce(output.topic.name, key=output.key.encode(), value=value,
                                      on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain, then retry
                self.producer.poll(0.05)
        self.producer.poll(0)

    def flush(self, timeout_s: float = 30) -> None:
        if self.producer.flush(timeout_s) != 0 or self._errors:
            raise RuntimeError(f"produce failed: {self._errors[:3] or 'messages still queued'}; is Kafka up?")

    def close(self) -> None:
        """Deliver what is queued, then release the Kafka client (its threads would otherwise keep
        reconnecting to a stopped broker until garbage collection)."""
        try:
            self.flush()
        finally:
            self.producer.close()

    def place(self, order_id: str, lines: list[tuple[str, int, int]], token: str = "tok_approve",
              user_id: str = "u-demo", currency: str = "EUR") -> None:
        self.send(Output(PlaceOrder(
            event_id=str(uuid.uuid4()), order_id=order_id, user_id=user_id,
            lines=tuple(OrderLine(sku, q, Money(p, currency)) for sku, q, p in lines),
            shipping_address=None, payment_token=token, currency=currency, occurred_at=datetime_of_ms(now_ms()),
        )))

    def cancel(self, order_id: str, by: str = "u-demo") -> None:
        self.send(Output(CancelOrder(str(uuid.uuid4()), order_id, by, datetime_of_ms(now_ms()))))

    def seed_stock(self, stock: dict[str, int]) -> None:
        """Units on hand per sku (skus at zero left unlisted), delivered before it returns."""
        for sku, units in stock.items():
            if units:
                self.adjust_stock(sku, units)
        self.flush()

    def adjust_stock(self, sku: str, delta: int, reason: str = "seed") -> None:
        self.send(Output(StockAdjusted(event_id=str(uuid.uuid4()), sku=sku, delta=delta, reason=reason,
                                       adjusted_by=None, occurred_at=datetime_of_ms(now_ms()))))


class TopicReader:
    """Reads topics from given offsets (or the end), decoding every record to (topic, short name, value)."""

    def __init__(self, settings: Settings, codec: AvroCodec | None, topics: Iterable[str], from_end: bool = True):
        self.codec = codec or AvroCodec(SchemaRegistry(settings.registry_url))
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                                  "group.id": f"shopflow-reader-{uuid.uuid4().hex}", "enable.auto.commit": False})
        assignment = []
        for name in topics:
            meta = self.consumer.list_topics(name, timeout=10).topics[name]
            for p in meta.partitions:
                low, high = self.consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                assignment.append(TopicPartition(name, p, high if from_end else low))
        self.consumer.assign(assignment)

    def poll(self, timeout_s: float = 0.5, max_records: int = 5000) -> list[tuple[str, str, dict[str, Any], int]]:
        """(topic, record short name, plain value, broker timestamp ms) of the records read."""
        return [(m.topic() or "", record, value, m.timestamp()[1])
                for m, record, value in self.poll_messages(timeout_s, max_records)]

    def poll_messages(self, timeout_s: float = 0.5,
                      max_records: int = 5000) -> list[tuple[Message, str, dict[str, Any]]]:
        """(message, record short name, plain value): the raw message too, to redeliver it byte for byte."""
        out = []
        for msg in self.consumer.consume(max_records, timeout_s):
            data = msg.value()
            if msg.error() or data is None:
                continue
            try:
                record = self.codec.record_name(data).rsplit(".", 1)[1]
                out.append((msg, record, plain(self.codec.decode(data))))
            except Exception:  # noqa: BLE001 - a poison record is the agents' business, not a reader's
                continue
        return out

    def close(self) -> None:
        self.consumer.close()


def iter_topic(bootstrap_servers: str, topic: str, timeout_s: float = 60) -> Iterator[Message]:
    """Every record on ``topic`` up to each partition's end as it was when called, in order within a
    partition; nothing for a topic that does not exist. Read without a consumer group's offsets."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"shopflow-read-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return
        ends, assignment = {}, []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, low))
        consumer.assign(assignment)
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {sorted(set(ends) - done)} not read to their end in "
                                   f"{timeout_s:.0f}s; is Kafka up?")
            for msg in consumer.consume(5000, 0.5):
                partition, offset = msg.partition(), msg.offset()
                if msg.error() or partition is None or offset is None or partition in done:
                    continue
                yield msg
                if offset + 1 >= ends[partition]:
                    done.add(partition)
    finally:
        consumer.close()


def read_changelog(settings: Settings, table: TableSpec,
                   keep: Callable[[str], bool] = lambda k: True) -> dict[str, dict[str, Any]]:
    """The latest value of every key of a table, from its changelog topic (JSON values)."""
    latest: dict[str, dict[str, Any] | None] = {}
    for msg in iter_topic(settings.bootstrap_servers, changelog_topic(table)):
        raw_key, raw = msg.key(), msg.value()
        key = raw_key.decode() if raw_key else ""
        if keep(key):
            latest[key] = json.loads(raw) if raw else None
    return {k: v for k, v in latest.items() if v is not None}

