"""Saga throughput and latency through the real broker, against a raw passthrough on the same broker.

    .venv/bin/python -m benchmarks.saga [--orders 5000] [--rate 1000] [--seconds 10] [--workers 1] [--profile]

Needs the stack up (`shopflow stack up`). Applies the topic catalog, starts its own workers
(`shopflow worker`, ready when their /health/ lists partitions they hold), seeds stock so orders go
through, then:
  1. flat out: places --orders orders as fast as the producer takes them; sustained orders/s from
     the first PlaceOrder to the last terminal record (broker timestamps);
  2. fixed rate, once the workers have caught up with everything the flat-out phase left (no saga
     topic has grown for 2 s): --rate orders/s for --seconds; p50/p99 of PlaceOrder -> terminal record;
  3. passthrough: a bare confluent-kafka consume -> produce loop over the same number of records a
     saga run moves, on the same broker; events/s, and the saga's events/s as a share of it.
With --profile, after the measured runs (never profiled: cProfile halves a worker's speed), one worker
runs a flat-out pass under cProfile and its top functions are written out.
Results go to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import os
import pstats
import statistics
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from benchmarks.progress import tqdm
from benchmarks.results import write_section
from shopflow.launch import ShopflowProcess, worker_health
from shopflow.settings import get_settings
from shopflow.streams.client import SAGA_TOPICS, SagaClient, TopicReader, producer_config
from shopflow.topologies.apply import apply_topics

TERMINAL = {"OrderConfirmed", "OrderCancelled"}
# PlaceOrder, OrderPlaced, ReserveStock, StockReserved, PaymentRequested, PaymentSucceeded, OrderConfirmed,
# CommitStock (6 of them consumed by the workers).
RECORDS_PER_ORDER = 8


def start_workers(n: int, profile: Path | None) -> list[ShopflowProcess]:
    """n workers, each ready (joined, tables restored: see shopflow.launch) before this returns."""
    settings = get_settings()
    procs = []
    for i in range(n):
        port = settings.worker_port + 10 + i
        proc = ShopflowProcess(
            f"benchmark worker :{port}", ["worker", "--web-port", str(port), "--loglevel", "warn"],
            settings.log_dir / f"bench-worker-{i}.log", health=worker_health(settings, port),
            env={"SHOPFLOW_RESERVATION_TIMEOUT_S": "120", "SHOPFLOW_PAYMENT_TIMEOUT_S": "120"},
            python_args=["-m", "cProfile", "-o", str(profile)] if profile is not None and i == 0 else ())
        proc.spawn()
        procs.append(proc)
    for proc in procs:
        proc.wait_ready()
    return procs


def stop_workers(workers: list[ShopflowProcess]) -> None:
    for w in workers:
        w.close()


def follow(reader: TopicReader, run: str, count: int, label: str, timeout_s: float = 600) -> tuple[dict, dict]:
    placed: dict[str, int] = {}
    done: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    with tqdm(total=count, desc=label) as bar:
        while len(done) < count and time.monotonic() < deadline:
            for _, record, value, ts in reader.poll(0.2):
                order_id = value.get("order_id", "")
                if not order_id.startswith(run):
                    continue
                if record == "PlaceOrder":
                    placed[order_id] = ts
                elif record in TERMINAL and order_id not in done:
                    done[order_id] = ts
                    bar.update(1)
    return placed, done


def place(client: SagaClient, run: str, count: int, skus: list[str], rate: float | None, label: str) -> None:
    interval = 1.0 / rate if rate else 0.0
    t0 = time.perf_counter()
    for n in tqdm(range(count), desc=label):
        if interval:
            wait = t0 + n * interval - time.perf_counter()
            if wait > 0:  # pacing: the fixed rate is what this phase measures
                time.sleep(wait)
        client.place(f"{run}-{n:06d}", [(skus[n % len(skus)], 1, 1999)], "tok_approve")
    client.flush(120)


def passthrough(records: int) -> float:
    """events/s of consume -> produce with bare confluent-kafka on the same broker (same acks, same keys)."""
    settings = get_settings()
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    src, dst = f"bench-src-{uuid.uuid4().hex[:6]}", f"bench-dst-{uuid.uuid4().hex[:6]}"
    for f in admin.create_topics([NewTopic(src, 6, 1), NewTopic(dst, 6, 1)]).values():
        f.result()
    producer = Producer(producer_config(settings))
    payload = os.urandom(120)
    for i in range(records):
        while True:
            try:
                producer.produce(src, key=f"k{i}".encode(), value=payload)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush()
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-{src}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([src])
    moved, t0 = 0, 0.0
    with tqdm(total=records, desc="passthrough") as bar:
        while moved < records:
            for msg in consumer.consume(1000, 1.0):
                if msg.error():
                    continue
                t0 = t0 or time.perf_counter()
                while True:
                    try:
                        producer.produce(dst, key=msg.key(), value=msg.value())
                        break
                    except BufferError:
                        producer.poll(0.05)
                moved += 1
                bar.update(1)
            consumer.commit(asynchronous=True)
        producer.flush()
    elapsed = time.perf_counter() - t0
    consumer.close()
    admin.delete_topics([src, dst])
    return records / elapsed


def wait_quiet(quiet_s: float = 2.0, timeout_s: float = 300) -> None:
    """Until no saga topic has grown for ``quiet_s``: the workers have nothing left to produce from what
    came before (stock settlements, the tail of a flat-out backlog). Not the group's committed lag:
    Faust can hold a partition's commit back behind a gap for a long time while processing goes on."""
    settings = get_settings()
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        parts = [TopicPartition(topic, p) for topic, meta in consumer.list_topics(timeout=10).topics.items()
                 if topic in SAGA_TOPICS for p in meta.partitions]

        def ends() -> int:
            return sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts)

        last, since = ends(), time.monotonic()

        def quiet() -> bool:
            nonlocal last, since
            now = ends()
            if now != last:
                last, since = now, time.monotonic()
            return time.monotonic() - since >= quiet_s

        try:
            Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.25),
                     retry=retry_if_result(lambda settled: not settled))(quiet)
        except RetryError:
            raise RuntimeError(f"the saga topics were still growing after {timeout_s:.0f} s; "
                               "see .shopflow/logs/bench-worker-*.log") from None
    finally:
        consumer.close()


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    settings = get_settings()
    # Stock is seeded and orders read before any worker (which applies the catalog too) has started.
    apply_topics(AdminClient({"bootstrap.servers": settings.bootstrap_servers}))
    client = SagaClient(settings)
    run = uuid.uuid4().hex[:6]
    skus = [f"{run}-BENCH-{i:02d}" for i in range(60)]
    profiled_n = min(args.orders, 1000) if args.profile else 0
    for sku in skus:
        client.adjust_stock(sku, args.orders + int(args.rate * args.seconds) + profiled_n)
    client.flush()

    workers = start_workers(args.workers, None)
    try:
        reader = TopicReader(settings, client.codec, SAGA_TOPICS, from_end=True)
        place(client, f"{run}-flat", args.orders, skus, None, "placing flat out")
        placed, done = follow(reader, f"{run}-flat", args.orders, "flat out: to terminal")
        flat_rate = len(done) / ((max(done.values()) - min(placed.values())) / 1000)
        flat_lat = [done[o] - placed[o] for o in done if o in placed]

        wait_quiet()  # the stock settlements and the rest of the flat-out backlog
        fixed_n = int(args.rate * args.seconds)
        place(client, f"{run}-rate", fixed_n, skus, args.rate, f"placing at {args.rate:.0f}/s")
        placed_r, done_r = follow(reader, f"{run}-rate", fixed_n, "fixed rate: to terminal")
        lat = [done_r[o] - placed_r[o] for o in done_r if o in placed_r]
        wait_quiet()
        reader.close()
    finally:
        stop_workers(workers)

    profile = settings.home / "bench-worker.prof" if args.profile else None
    if profile is not None:
        profiled = start_workers(1, profile)
        try:
            reader = TopicReader(settings, client.codec, SAGA_TOPICS, from_end=True)
            place(client, f"{run}-prof", profiled_n, skus, None, "profiled pass")
            follow(reader, f"{run}-prof", profiled_n, "profiled pass: to terminal")
            reader.close()
        finally:
            stop_workers(profiled)
    client.close()

    raw = passthrough(args.orders * RECORDS_PER_ORDER)
    saga_events = flat_rate * RECORDS_PER_ORDER
    top = ""
    if profile is not None and profile.exists():
        out = Path("/tmp/saga-profile.txt")
        with out.open("w") as f:
            pstats.Stats(str(profile), stream=f).sort_stats("tottime").print_stats(15)
        top = "\n".join(line for line in out.read_text().splitlines() if line.strip())[:3500]

    body = (
        f"Settings: {args.workers} worker(s), agents at concurrency 1, at_least_once, stack on the same 2 cores; "
        f"one order = one line, approved card; {RECORDS_PER_ORDER} records per order through the broker.\n\n"
        f"| measure | value | target |\n| --- | ---: | ---: |\n"
        f"| flat out, {args.orders:,} orders: sustained orders/s | {flat_rate:,.0f} | >= 2,000 |\n"
        f"| flat out: p50 / p99 placed -> terminal | {pct(flat_lat, 50):,.0f} / {pct(flat_lat, 99):,.0f} ms | |\n"
        f"| fixed {args.rate:,.0f} orders/s for {args.seconds:.0f} s: p50 / p99 placed -> terminal | "
        f"{pct(lat, 50):,.0f} / {pct(lat, 99):,.0f} ms | p99 <= 250 ms |\n"
        f"| fixed rate: orders completed | {len(done_r):,} of {fixed_n:,} | |\n"
        f"| raw confluent-kafka consume -> produce passthrough | {raw:,.0f} events/s | |\n"
        f"| saga events/s (orders/s x {RECORDS_PER_ORDER}) / passthrough | {saga_events:,.0f} / {raw:,.0f} = "
        f"{saga_events / raw:.0%} | |\n\n"
        f"Command: `.venv/bin/python -m benchmarks.saga --orders {args.orders} --rate {args.rate:.0f} "
        f"--seconds {args.seconds:.0f} --workers {args.workers}{' --profile' if args.profile else ''}`\n"
    )
    if top:
        body += (f"\nWhere the time goes (cProfile of one worker in a separate flat-out pass of {profiled_n:,} "
                 f"orders, top functions by own time):\n\n```\n{top}\n```\n")
    write_section("saga", body)
    print(body)


if __name__ == "__main__":
    main()
