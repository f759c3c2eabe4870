"""Commands out of the edge: Avro records produced with acks=all and idempotence, awaited in asyncio.

A command is acknowledged to the client (202) only after the broker has it on all in-sync replicas.

Delivery reports are served on the event loop's own thread while commands are in flight: a pump task
calls ``poll(0)`` once per loop iteration and each callback resolves its ``send``'s future directly.
Only when a few iterations in a row found nothing (the loop has nothing else to do either) does the
pump wait for the broker in a thread (``poll`` with a timeout, the loop stays free), and callbacks
served there come back through ``call_soon_threadsafe``. The obvious alternative, a thread that polls
all the time, is what this replaced: every callback it runs must take the GIL from a busy loop, which
CPython hands over only after its switch interval (5 ms), once per callback, so bursts of deliveries
queued behind each other (``benchmarks/edge.py`` at 16 concurrent orders: p99 33 ms for a bare
producing endpoint, 6 ms with the pump).

The configuration is every ShopFlow producer's (``shopflow.kafka``: acks=all, idempotence, the Java
client's murmur2 partitioner) with the edge's own timing.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from shopflow.api.metrics import COMMANDS_PRODUCED
from shopflow.kafka import producer_config
from shopflow.metrics import Children
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.records import AvroRecord
from shopflow.topologies.catalog import Topic

# Loop iterations without a delivery before the pump waits in a thread instead (about 0.1 ms of an idle loop).
SPIN_ITERATIONS = 20
# How long one wait in the thread lasts at most; it returns as soon as a report is served.
IDLE_POLL_S = 0.05

_produced = Children(COMMANDS_PRODUCED)


class ProduceError(Exception):
    """The broker did not take a command; the client may retry with the same Idempotency-Key."""


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    partition: int
    offset: int


# Each request waits for its own delivery: no linger (1 ms cost a lone request ~1 ms at p50); under
# concurrency librdkafka still batches what queues while a request is in flight. The timeouts bound
# how long a request can wait for the broker before it is answered 503.
EDGE_TUNING: dict[str, object] = {"linger.ms": 0, "delivery.timeout.ms": 10_000, "request.timeout.ms": 5_000}


def edge_producer_config(bootstrap_servers: str) -> dict[str, object]:
    return producer_config(bootstrap_servers, "shopflow-api", **EDGE_TUNING)


class CommandProducer:
    def __init__(self, producer: Producer, codec: AvroCodec):
        self._producer = producer
        self.codec = codec
        self._in_flight = 0
        self._closed = False
        self._pump: asyncio.Task[None] | None = None
        self._loop_thread: int | None = None
        self._waiter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-delivery")

    @classmethod
    def connect(cls, bootstrap_servers: str, codec: AvroCodec) -> CommandProducer:
        return cls(Producer(edge_producer_config(bootstrap_servers)), codec)

    async def _serve_deliveries(self) -> None:
        """Serve delivery reports while any ``send`` waits for one (see the module's doc)."""
        loop = asyncio.get_running_loop()
        quiet = 0
        while self._in_flight and not self._closed:  # closed: what flush could not deliver stays unanswered
            quiet = 0 if self._producer.poll(0) else quiet + 1
            if quiet < SPIN_ITERATIONS:
                await asyncio.sleep(0)
            else:
                try:
                    await loop.run_in_executor(self._waiter, self._producer.poll, IDLE_POLL_S)
                except RuntimeError:  # closed meanwhile (the executor is shut down, or the client)
                    return
                quiet = 0

    def _delivered(self, future: asyncio.Future[Delivery], result: Delivery | ProduceError) -> None:
        self._in_flight -= 1
        if isinstance(result, Delivery):  # counted even when its request is gone: the command is out
            _produced[result.topic].inc()
        _resolve(future, result)

    def warm(self, topic: Topic, record: type[AvroRecord]) -> None:
        """Register a record's schema now, so no request waits for the registry (blocking HTTP)."""
        self.codec.warm(topic, record)

    def encode(self, topic: Topic, record: AvroRecord) -> bytes:
        return self.codec.encode(topic, record)

    async def send(self, topic: Topic, key: str, record: AvroRecord) -> Delivery:
        """Produce ``record`` keyed by ``key`` to ``topic`` and wait until the broker has it (acks=all)."""
        value = self.encode(topic, record)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                result: Delivery | ProduceError = ProduceError(f"{topic.name}: {err.str()}")
            else:
                # A delivered record always has its place; -1 would only say the client did not report it.
                partition, offset = msg.partition(), msg.offset()
                result = Delivery(topic.name, -1 if partition is None else partition, -1 if offset is None else offset)
            if threading.get_ident() == self._loop_thread:
                self._delivered(future, result)
            else:
                loop.call_soon_threadsafe(self._delivered, future, result)

        event_id = str(record.event_id)  # type: ignore[attr-defined]  # every record has one
        headers: list[tuple[str, str | bytes | None]] = [("event_type", name_of(record).encode()),
                                                         ("event_id", event_id.encode())]
        try:
            self._producer.produce(topic.name, key=key.encode(), value=value, headers=headers, on_delivery=on_delivery)
        except BufferError:
            raise ProduceError(f"{topic.name}: the producer's queue is full; retry shortly") from None
        except KafkaException as exc:
            raise ProduceError(f"{topic.name}: {exc}") from None
        self._in_flight += 1
        if self._pump is None or self._pump.done():
            self._loop_thread = threading.get_ident()
            self._pump = loop.create_task(self._serve_deliveries(), name="kafka-deliveries")
        return await future

    def ready(self, timeout_s: float = 2.0) -> bool:
        """True when the broker answers a metadata request (blocking; call from a thread)."""
        try:
            self._producer.list_topics(timeout=timeout_s)
            return True
        except KafkaException:
            return False

    def close(self, timeout_s: float = 10.0) -> int:
        """Deliver what is queued (up to ``timeout_s``), then release the client (its threads and broker
        connections, which would otherwise live on until garbage collection, retrying a broker that
        may be gone); return how many were left undelivered."""
        left = self._producer.flush(timeout_s)
        self._closed = True
        self._waiter.shutdown(wait=True)
        self._producer.close()
        return left


def name_of(record: AvroRecord) -> str:
    """The record's short name (``PlaceOrder``), as the outbox puts it in the ``event_type`` header."""
    return record.AVRO_NAME.rsplit(".", 1)[1]


def _resolve(future: asyncio.Future[Delivery], result: Delivery | ProduceError) -> None:
    if future.done():  # the request was cancelled (client gone); the command is produced regardless
        return
    if isinstance(result, ProduceError):
        future.set_exception(result)
    else:
        future.set_result(result)
