"""``shopflow search rebuild`` on a large catalog: wall time, records/s, the command's peak memory, and
whether searches kept answering meanwhile.

    .venv/bin/python -m benchmarks.search_rebuild [--products 100000] [--stock 100000]

Needs the stack up (`shopflow stack up`). ``--products`` ProductUpserted records (Avro, the project's codec,
with the outbox's ``event_type`` header) go onto a throwaway topic of 3 partitions as ``catalog.products``
has, and ``--stock`` inventory rows (the table's JSON) onto a throwaway changelog; a first rebuild makes the
live alias, then the timed one runs as the real command (``shopflow search rebuild``) in a process of its
own, while this one searches through the alias without pause. Peak RSS is that process's (getrusage of
the child). The topics and indices are removed at the end. Results go to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.progress import tqdm
from benchmarks.results import write_section
from shopflow.catalog.search import SearchError, SearchQuery
from shopflow.catalog.search_index import ProductSearch
from shopflow.schemas.catalog import ProductUpserted
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.records import Money
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings, get_settings
from shopflow.streams.client import producer_config
from shopflow.streams.search_rebuild import rebuild
from shopflow.topologies.catalog import CATALOG_PRODUCTS

SHOPFLOW = [sys.executable, "-m", "shopflow.cli"]


def produce(settings: Settings, topic: str, stock_topic: str, products: int, stock: int, tag: str) -> None:
    codec = AvroCodec(SchemaRegistry(settings.registry_url))
    producer = Producer(producer_config(settings, **{"linger.ms": 20, "batch.size": 1_000_000}))
    at = datetime(2026, 12, 1, tzinfo=UTC)

    def send(topic: str, key: bytes, value: bytes, headers: list[tuple[str, str | bytes | None]]) -> None:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.05)

    for i in tqdm(range(products), desc="products produced"):
        sku = f"BR-{tag}-{i:06d}"
        event = ProductUpserted(event_id=str(uuid.uuid4()), sku=sku, version=1, name=f"Reading lamp {i}",
                                description="A lamp for the rebuild benchmark, warm light, brass finish",
                                brand=f"Brand {i % 50}", category=f"home/lighting/{i % 20}",
                                price=Money(1000 + i % 5000, "EUR"), attributes={"colour": "brass"}, active=True,
                                occurred_at=at)
        send(topic, sku.encode(), codec.encode(CATALOG_PRODUCTS, event), [("event_type", b"ProductUpserted")])
    for i in tqdm(range(stock), desc="stock rows produced"):
        sku = f"BR-{tag}-{i % max(products, 1):06d}"
        send(stock_topic, sku.encode(), json.dumps({"sku": sku, "on_hand": 5, "reserved": i % 3}).encode(), [])
    if producer.flush(120):
        raise RuntimeError("records still queued after 120 s; is Kafka up (`shopflow stack status`)?")


class Searcher(threading.Thread):
    """Searches through the alias without pause, counting answers, failures and short answers."""

    def __init__(self, settings: Settings, alias: str, expected: int):
        super().__init__(name="searcher", daemon=True)
        self.search, self.expected = ProductSearch.connect(settings, alias), expected
        self.answered = self.failed = self.short = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                total = self.search.search(SearchQuery(text="lamp", size=10)).total
                self.answered += 1
                self.short += total != self.expected
            except SearchError:
                self.failed += 1


def bench(settings: Settings, products: int, stock: int) -> dict:
    tag = uuid.uuid4().hex[:8]
    topic, stock_topic, alias = f"bench-rebuild-catalog-{tag}", f"bench-rebuild-stock-{tag}", f"bench-products-{tag}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for name, partitions in ((topic, CATALOG_PRODUCTS.partitions), (stock_topic, 6)):
        admin.create_topics([NewTopic(name, partitions, 1, config={"cleanup.policy": "compact"})])[name].result(30)
    search = ProductSearch.connect(settings, alias)
    try:
        produce(settings, topic, stock_topic, products, stock, tag)
        # The live index first (as a stack has it), so the timed run switches from one generation to another.
        first = rebuild(settings, alias=alias, topic=topic, stock_topic=stock_topic)
        searcher = Searcher(settings, alias, products)
        searcher.start()
        t0 = time.perf_counter()
        proc = subprocess.run([*SHOPFLOW, "search", "rebuild", "--alias", alias, "--topic", topic,
                               "--stock-topic", stock_topic], stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        searcher.stop.set()
        searcher.join(30)
        if proc.returncode:
            raise RuntimeError(f"`shopflow search rebuild` failed ({proc.returncode}); its error is above")
        generations = search.generations().indices
        return {"wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "report": proc.stdout.strip(), "first_s": first.seconds, "count": search.count(),
                "answered": searcher.answered, "failed": searcher.failed, "short": searcher.short,
                "switched": generations != (first.index,) and len(generations) == 1}
    finally:
        search.delete_index()
        search.close()
        for f in admin.delete_topics([topic, stock_topic]).values():
            f.result(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--stock", type=int, default=100_000, help="inventory changelog rows (one per sku by default)")
    args = ap.parse_args()

    r = bench(get_settings(), args.products, args.stock)
    records = args.products + args.stock
    table = "\n".join(f"    {line}" for line in r["report"].splitlines())
    body = (
        f"{args.products:,} products (one ProductUpserted each, Avro, on a 3-partition topic) and {args.stock:,} "
        f"inventory changelog rows, rebuilt into a new generation of a throwaway alias by the real command "
        f"(`shopflow search rebuild`, its own process) while the index it replaces was live, then the alias "
        f"switched. The stack (broker, OpenSearch, ...) shares the machine's cores with the command.\n\n"
        f"| measure | value |\n| --- | ---: |\n"
        f"| wall time of the command (process start to exit) | {r['wall']:.1f} s |\n"
        f"| records/s (products + stock rows) | {records / r['wall']:,.0f} |\n"
        f"| products/s | {args.products / r['wall']:,.0f} |\n"
        f"| peak RSS of the command | {r['rss_mb']:,.0f} MB |\n"
        f"| products in the index afterwards | {r['count']:,} |\n"
        f"| searches answered meanwhile / failed / with a wrong total | {r['answered']:,} / {r['failed']} / "
        f"{r['short']} |\n"
        f"| alias switched to the new generation only | {'yes' if r['switched'] else 'NO'} |\n\n"
        f"The command's report:\n\n{table}\n\n"
        f"Command: `.venv/bin/python -m benchmarks.search_rebuild --products {args.products} --stock {args.stock}`"
    )
    write_section("search rebuild", body)
    print(body)


if __name__ == "__main__":
    main()
