"""The Faust saga against a peer: the same engine and tables on a plain confluent-kafka loop, in one run.

    .venv/bin/python -m benchmarks.peer [--orders 5000] [--batch 1000]

Needs the stack up (`shopflow stack up`). Both sides run the same handlers (``Engine.apply``), the
same codec and RocksDB, changelogs and the same commit rule (an offset is committed only after what
its records caused, outputs and changelog, is acknowledged by the broker); they differ in the loop:

- Faust: one `shopflow worker` (agents at concurrency 1, one event at a time), orders placed flat out;
- peer: consume a batch -> read each key once -> apply the records in order -> write each key once
  (RocksDB write batch + one changelog record per key) -> produce the outputs -> flush (all
  acknowledged) -> commit the batch's offsets. On its own topics (a prefix), so the two never meet.

Reports orders/s (first placed -> last terminal) and CPU microseconds per order of the processing
process (its threads included), and Faust's share of the peer. Results go to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import defaultdict
from functools import partial
from pathlib import Path

import psutil
import rocksdict
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.progress import tqdm
from benchmarks.results import write_section
from benchmarks.saga import follow, place, start_workers, stop_workers
from shopflow.schemas.codec import AvroCodec, CodecError
from shopflow.schemas.orders import OrderCancelled, OrderConfirmed
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import get_settings
from shopflow.streams.client import SAGA_TOPICS, SagaClient, TopicReader, producer_config
from shopflow.streams.engine import INVENTORY_ROUTE, ROUTES, Engine, route_for
from shopflow.streams.inventory import SettledRows
from shopflow.streams.runtime import Output
from shopflow.tables import TABLES
from shopflow.tables.values import decode, encode, stored_items
from shopflow.topologies.apply import apply_topics

TERMINAL_RECORDS = (OrderConfirmed, OrderCancelled)


class PeerLoop:
    """The saga's agents on a plain consume -> process -> produce -> commit loop, batched per poll."""

    def __init__(self, settings, prefix: str, datadir: Path, batch: int):
        self.prefix, self.batch = prefix, batch
        self.codec = AvroCodec(SchemaRegistry(settings.registry_url))
        self.engine = Engine(timeouts={"payment_timeout": 120, "reservation_timeout": 120})
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"{prefix}peer",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "fetch.wait.max.ms": 10})
        self.producer = Producer(producer_config(settings, **{"linger.ms": 2, "batch.num.messages": 10000}))
        self.dbs = {(spec.name, p): rocksdict.Rdict(str(datadir / spec.name / str(p)))
                    for spec in TABLES for p in range(spec.partitions)}
        self.settled = SettledRows()
        self.terminal = 0

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def inputs(self) -> list[str]:
        return sorted({self.topic(t.name) for route in ROUTES for t in route.topics})

    def changelogs(self) -> list[tuple[str, int]]:
        return [(self.topic(f"{spec.name}-changelog"), spec.partitions) for spec in TABLES]

    def send(self, output: Output) -> None:
        value = self.codec.encode(output.topic, output.record)
        self._produce(self.topic(output.topic.name), output.key.encode(), value)
        if isinstance(output.record, TERMINAL_RECORDS):
            self.terminal += 1

    def _produce(self, topic: str, key: bytes, value: bytes | None, partition: int = -1) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, partition=partition)
                return
            except BufferError:
                self.producer.poll(0.01)

    async def run(self, until_terminal: int, timeout_s: float = 600) -> None:
        self.consumer.subscribe(self.inputs())
        deadline = time.monotonic() + timeout_s
        with tqdm(total=until_terminal, desc="peer: to terminal") as bar:
            while self.terminal < until_terminal and time.monotonic() < deadline:
                before = self.terminal
                await self.process(self.consumer.consume(self.batch, 0.05))
                bar.update(self.terminal - before)

    async def process(self, messages) -> None:
        if not messages:
            return
        cache: dict[tuple[str, int, str], dict | None] = {}
        dirty: set[tuple[str, int, str]] = set()
        offsets: dict[tuple[str, int], int] = {}
        now = int(time.time() * 1000)
        for msg in messages:
            if msg.error():
                continue
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            route = route_for(msg.topic()[len(self.prefix):])
            data = msg.value()
            if route is None or data is None:
                continue  # a topic no agent consumes; a tombstone the workers dead-letter
            try:
                record = self.codec.decode_record(data)
            except CodecError:
                continue  # the workers dead-letter it; the benchmark sends none
            table, p = (route.table.name if route.table else ""), msg.partition()

            def load(key: str, table=table, p=p):
                at = (table, p, key)
                if at not in cache:
                    cache[at] = decode(self.dbs[at[:2]].get(key.encode()))
                return cache[at]

            result = await self.engine.apply(route, record, load if route.table else None, now, msg.offset())
            if route is INVENTORY_ROUTE:
                self.settled.track(p, result.writes, load, now, partial(stored_items, self.dbs[(table, p)]))
            for key, stored in result.writes.items():
                cache[(table, p, key)] = stored
                dirty.add((table, p, key))
            for output in result.outputs:
                self.send(output)
        # Each key written once for the whole batch: one RocksDB write batch per partition, one
        # changelog record per key.
        batches: dict[tuple[str, int], rocksdict.WriteBatch] = defaultdict(rocksdict.WriteBatch)
        for table, p, key in dirty:
            stored = cache[(table, p, key)]
            raw = None if stored is None else encode(stored)
            if raw is None:
                batches[(table, p)].delete(key.encode())
            else:
                batches[(table, p)].put(key.encode(), raw)
            self._produce(self.topic(f"{table}-changelog"), key.encode(), raw, partition=p)
        for at, batch in batches.items():
            self.dbs[at].write(batch)
        # Commit only behind delivery: everything the batch caused is acknowledged first.
        if self.producer.flush(60) != 0:
            raise RuntimeError("the peer's records were not acknowledged in 60 s; is Kafka up?")
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)

    def close(self) -> None:
        self.consumer.close()
        for db in self.dbs.values():
            db.close()


def create_topics(settings, loop: PeerLoop) -> list[str]:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    by_name = {t.name: t for route in ROUTES for t in route.topics}
    wanted = [NewTopic(loop.topic(n), t.partitions, 1) for n, t in by_name.items()]
    wanted += [NewTopic(name, parts, 1, config={"cleanup.policy": "compact"}) for name, parts in loop.changelogs()]
    wanted += [NewTopic(loop.topic(n), 6, 1) for n in SAGA_TOPICS if n not in by_name]
    for future in admin.create_topics(wanted).values():
        future.result(30)
    return [t.topic for t in wanted]


def run_faust(settings, orders: int, skus: list[str], run: str) -> tuple[float, float]:
    client = SagaClient(settings)
    for sku in skus:
        client.adjust_stock(sku, orders)
    client.flush()
    workers = start_workers(1, None)
    try:
        proc = psutil.Process(workers[0].pid)
        reader = TopicReader(settings, client.codec, SAGA_TOPICS, from_end=True)
        cpu0 = sum(proc.cpu_times()[:2])
        place(client, f"{run}-faust", orders, skus, None, "faust: placing flat out")
        placed, done = follow(reader, f"{run}-faust", orders, "faust: to terminal")
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        reader.close()
    finally:
        stop_workers(workers)
        client.close()
    rate = len(done) / ((max(done.values()) - min(placed.values())) / 1000)
    return rate, cpu / len(done) * 1e6


def run_peer(settings, orders: int, skus: list[str], run: str, batch: int) -> tuple[float, float]:
    prefix = f"peer-{run}-"
    datadir = settings.home / "bench-peer" / run
    loop = PeerLoop(settings, prefix, datadir, batch)
    topics = create_topics(settings, loop)

    class Prefixed(SagaClient):  # the same commands, onto the peer's topics
        def send(self, output: Output) -> None:
            value = self.codec.encode(output.topic, output.record)
            self.producer.produce(prefix + output.topic.name, key=output.key.encode(), value=value)
            self.producer.poll(0)

    client = Prefixed(settings)
    for sku in skus:
        client.adjust_stock(sku, orders)
    place(client, f"{run}-peer", orders, skus, None, "peer: placing")
    client.close()
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        asyncio.run(loop.run(orders))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        loop.close()
        AdminClient({"bootstrap.servers": settings.bootstrap_servers}).delete_topics(topics)
    return loop.terminal / elapsed, cpu / max(loop.terminal, 1) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=1000, help="the peer's records per poll")
    args = ap.parse_args()
    settings = get_settings()
    apply_topics(AdminClient({"bootstrap.servers": settings.bootstrap_servers}))  # stock is seeded before any worker
    run = uuid.uuid4().hex[:6]
    skus = [f"{run}-PEER-{i:02d}" for i in range(20)]
    faust_rate, faust_cpu = run_faust(settings, args.orders, skus, run)
    peer_rate, peer_cpu = run_peer(settings, args.orders, skus, run, args.batch)
    body = (
        f"One order = one line, approved card; {args.orders:,} orders flat out over 20 skus; the 2 cores are "
        f"shared with the whole stack. CPU is the processing process's own (user + system, all its threads).\n\n"
        f"| loop | orders/s | CPU us per order |\n| --- | ---: | ---: |\n"
        f"| Faust worker (1) | {faust_rate:,.0f} | {faust_cpu:,.0f} |\n"
        f"| plain confluent-kafka loop, batches of {args.batch} | {peer_rate:,.0f} | {peer_cpu:,.0f} |\n"
        f"| Faust / peer | {faust_rate / peer_rate:.0%} (target >= 50%) | {faust_cpu / peer_cpu:.1f}x |\n\n"
        f"Command: `.venv/bin/python -m benchmarks.peer --orders {args.orders} --batch {args.batch}`\n"
    )
    write_section("peer", body)
    print(body)


if __name__ == "__main__":
    main()
