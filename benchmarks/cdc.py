"""CDC latency: a product update's PostgreSQL commit -> visible in search, through the whole pipeline.

    .venv/bin/python -m benchmarks.cdc [--updates 1000] [--products 100] [--concurrency 4]

Needs the stack up (`shopflow stack up`). Updates go through the catalog (catalog/store.py: row + outbox row in
one transaction), Debezium carries them to a topic of their own, the search indexer (run here in a
process of its own, as in production) applies them to an index of their own. A poller
searches the benchmark's skus every few milliseconds and notes when each (sku, version) - or a newer
one - first becomes visible; latency is that moment minus the moment the commit returned. The topics,
the index and the products are removed at the end. Target: p99 <= 1.5 s. Results go to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import statistics
import threading
import time
import uuid

import asyncpg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.progress import tqdm
from benchmarks.results import write_section
from shopflow.catalog import Catalog, ProductInput
from shopflow.catalog.search_index import ProductSearch
from shopflow.connectors.apply import CONNECTORS_DIR, ConnectClient, load
from shopflow.db import migrate
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings, get_settings
from shopflow.streams.indexer import run as run_indexer
from shopflow.topologies.apply import apply_topics

POLL_S = 0.01


class Visibility:
    """Polls the index for the skus' versions and stamps when each committed version shows up."""

    def __init__(self, search: ProductSearch, skus: list[str]):
        self.search, self.skus = search, skus
        self.committed: dict[tuple[str, int], float] = {}
        self.visible: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="visibility", daemon=True)

    def commit(self, sku: str, version: int, at: float) -> None:
        with self._lock:
            self.committed[(sku, version)] = at

    def _poll(self) -> None:
        while not self._stop.is_set():
            versions = self.search.scan_versions(self.skus)
            now = time.perf_counter()
            with self._lock:
                for key in self.committed.keys() - self.visible.keys():
                    # A newer version visible means this one was (or was superseded): either way done.
                    if versions.get(key[0], 0) >= key[1]:
                        self.visible[key] = now
            time.sleep(POLL_S)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def pending(self) -> int:
        with self._lock:
            return len(self.committed.keys() - self.visible.keys())


def wait_drained(settings: Settings, topic: str, expected: int, timeout_s: float = 120) -> None:
    """Until every outbox row of ``topic`` is on it: deleting a topic Debezium still writes to would
    leave the shared connector retrying."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            on_topic = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3))
            if on_topic >= expected:
                return
            time.sleep(0.5)
    finally:
        consumer.close()


def _indexer_process(stop, topic: str, index: str, group_id: str) -> None:
    run_indexer(get_settings(), stop, topic=topic, index=index, group_id=group_id)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def bench(settings: Settings, updates: int, products: int, concurrency: int) -> dict:
    tag = uuid.uuid4().hex[:8]
    topic, index = f"bench-catalog-{tag}", f"bench-products-{tag}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    # The catalog's own topics too: the outbox connector also carries the categories made here.
    apply_topics(admin)
    for t, n in ((topic, 3), (f"{topic}.dlq", 1)):
        admin.create_topics([NewTopic(t, n, 1)])[t].result(timeout=30)
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    ConnectClient(settings.connect_url).apply(load(CONNECTORS_DIR / "catalog-outbox.json"))

    search = ProductSearch.connect(settings, index)
    search.ensure_index()
    # The indexer in a process of its own, as in production: in this one it would share the GIL
    # with the writers and the poller and measure their contention instead of the pipeline.
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    indexer = ctx.Process(target=_indexer_process, args=(stop, topic, index, f"bench-indexer-{tag}"),
                          name="indexer", daemon=True)
    indexer.start()
    catalog = await Catalog.open(settings, AvroCodec(SchemaRegistry(settings.registry_url)), topic=topic,
                                 pool_size=concurrency + 1)
    category = await catalog.create_category(f"bench-{tag}", "Benchmark")
    skus = [f"BENCH-{tag}-{i:04d}" for i in range(products)]
    watch = Visibility(search, skus)
    try:
        for sku in tqdm(skus, desc="products", leave=False):
            await catalog.create_product(ProductInput(
                sku=sku, name=f"Benchmark product {sku}", description="A product for the CDC benchmark",
                brand="Bench", category=category.path, price_minor=1000, currency="EUR"))
        while search.scan_versions(skus) != {s: 1 for s in skus}:  # warm: every product indexed
            await asyncio.sleep(0.2)

        watch.start()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(updates):
            queue.put_nowait(i)
        bar = tqdm(total=updates, desc="updates")

        async def writer() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                product = await catalog.update_product(skus[i % products], {"price_minor": 1001 + i})
                watch.commit(product.sku, product.version, time.perf_counter())
                bar.update()

        t0 = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(concurrency)))
        t_written = time.perf_counter()
        bar.close()
        with tqdm(total=updates, desc="visible") as seen:
            deadline = time.monotonic() + 120
            while (left := watch.pending()) and time.monotonic() < deadline:
                seen.n = updates - left
                seen.refresh()
                await asyncio.sleep(0.05)
            seen.n = updates - watch.pending()
        t_visible = max(watch.visible.values())
        watch.stop()
        if watch.pending():
            raise RuntimeError(f"{watch.pending()} updates not visible after 120 s; see .shopflow/logs/connect.log")
        latencies = [watch.visible[k] - at for k, at in watch.committed.items()]
        return {
            "latencies": latencies, "written_s": t_written - t0, "visible_s": t_visible - t0,
        }
    finally:
        watch.stop()
        for sku in skus:
            with contextlib.suppress(Exception):  # not created when the run failed early
                await catalog.delete_product(sku)
        await catalog.delete_category(category.id)
        conn = await asyncpg.connect(settings.postgres_dsn)
        try:
            rows = await conn.fetchval("SELECT count(*) FROM outbox WHERE aggregatetype = $1", topic)
        finally:
            await conn.close()
        await catalog.close()
        await asyncio.to_thread(wait_drained, settings, topic, rows)
        stop.set()
        indexer.join(30)
        if indexer.is_alive():
            indexer.terminate()
        search.delete_index()
        search.close()
        for f in admin.delete_topics([topic, f"{topic}.dlq"]).values():
            f.result(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=1000)
    ap.add_argument("--products", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=4, help="concurrent writers (each one transaction at a time)")
    args = ap.parse_args()

    r = asyncio.run(bench(get_settings(), args.updates, args.products, args.concurrency))
    lat = sorted(r["latencies"])
    ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    p99 = pct(lat, 0.99)
    body = (
        f"{args.updates:,} updates of {args.products} products by {args.concurrency} concurrent writers through "
        f"`catalog/store.py` (row + outbox in one transaction) -> Debezium (pgoutput, Outbox Event Router) -> "
        f"Kafka -> search indexer (bulk) -> OpenSearch (refresh every 250 ms). Latency: commit returned -> the version "
        f"(or a newer one) found by a search, polled every {POLL_S * 1000:.0f} ms.\n\n"
        f"| metric | value |\n| --- | ---: |\n"
        f"| p50 commit -> searchable | {ms(pct(lat, 0.50))} |\n"
        f"| p90 | {ms(pct(lat, 0.90))} |\n"
        f"| p99 | {ms(p99)} |\n"
        f"| max | {ms(lat[-1])} |\n"
        f"| updates/s committed | {args.updates / r['written_s']:,.0f} |\n"
        f"| updates/s end to end (first commit -> last visible) | {args.updates / r['visible_s']:,.0f} |\n\n"
        f"p99 {'<=' if p99 <= 1.5 else '>'} 1.5 s target: **{'met' if p99 <= 1.5 else 'missed'}**.\n\n"
        f"Command: `.venv/bin/python -m benchmarks.cdc --updates {args.updates} --products {args.products} "
        f"--concurrency {args.concurrency}`"
    )
    write_section("cdc", body)
    print(body)


if __name__ == "__main__":
    main()
