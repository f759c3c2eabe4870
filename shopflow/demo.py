"""The main job a newcomer runs with ``make demo``: orders through the saga, for real.

It starts a Faust worker (unless one runs), seeds stock, places a few dozen orders (some for skus
out of stock, some with cards that are declined), follows each order through the topics and prints
its path and outcome, then the auditor's report on the invariants. Then a catalog change goes
through the PostgreSQL outbox and Debezium into its topic, and last a client app walks through the
REST edge (started with the orders read model's projection): registers, fills a cart, checks out
and follows its order to the outcome.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import asyncpg
import httpx
import typer
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from shopflow import edge_demo
from shopflow.connectors.apply import CONNECTORS_DIR, ConnectClient, load
from shopflow.db import migrate
from shopflow.schemas import load_schema
from shopflow.schemas.check import register_all
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings
from shopflow.streams.audit import audit
from shopflow.streams.client import SAGA_TOPICS, SagaClient, TopicReader, read_changelog
from shopflow.tables import INVENTORY_TABLE, ORDERS_TABLE, PAYMENTS_TABLE
from shopflow.topologies.apply import apply_topics
from shopflow.topologies.catalog import CATALOG_PRODUCTS

TERMINAL = {"OrderConfirmed", "OrderCancelled"}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _read_at(settings: Settings, topic: str, partition: int, offset: int, timeout_s: float = 60):
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"demo-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, offset)])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                return msg
        raise RuntimeError(f"nothing arrived on {topic}[{partition}]@{offset} in {timeout_s}s; see .shopflow/logs/")
    finally:
        consumer.close()


def _end_offsets(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "demo-offsets"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()


def _worker_running(settings: Settings) -> bool:
    try:
        return httpx.get(f"http://{settings.host}:{settings.worker_port}/", timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def _start(settings: Settings, name: str, args: list[str], ready: Callable[[str], bool]) -> subprocess.Popen:
    """``shopflow <args>`` as a process for the demo's lifetime, once ``ready(log text)`` holds."""
    log_path = settings.log_dir / f"{name}-demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "shopflow.cli", *args], stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not ready(log_path.read_text(errors="replace")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the {name} did not start; see {log_path}")
        time.sleep(0.5)
    typer.echo(f"  {name} started (pid {proc.pid}, log {log_path})")
    return proc


def _start_worker(settings: Settings) -> subprocess.Popen | None:
    """A worker for the demo's lifetime, unless one already serves on the worker port."""
    if _worker_running(settings):
        typer.echo("  a worker is already running; using it")
        return None
    return _start(settings, "worker", ["worker"], lambda log: "Worker]: Ready" in log)


def _edge_up(settings: Settings) -> bool:
    try:
        return httpx.get(f"http://{settings.host}:{settings.api_port}/v1/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run(settings: Settings, orders: int = 36) -> None:
    step = lambda text: typer.secho(f"\n== {text}", bold=True)  # noqa: E731

    step("topics and schemas: the catalog applied to the broker, every schema registered")
    for line in apply_topics(AdminClient({"bootstrap.servers": settings.bootstrap_servers})) or ["topics up to date"]:
        typer.echo("  " + line)
    codec = AvroCodec(SchemaRegistry(settings.registry_url))
    typer.echo(f"  {len(register_all(codec.registry))} subjects registered (BACKWARD)")

    step("a Faust worker running the saga's agents")
    started = [p for p in [_start_worker(settings)] if p is not None]
    try:
        _saga(settings, codec, orders, step)
        _cdc(settings, codec, step)
        step("a client app through the REST edge: register, cart, checkout, follow the order")
        started.append(_start(settings, "projection", ["projection"], lambda log: True))
        if not _edge_up(settings):
            started.append(_start(settings, "edge", ["api"], lambda log: _edge_up(settings)))
        if not edge_demo.run(settings, f"http://{settings.host}:{settings.api_port}", say=lambda line: typer.echo("  " + line)):
            raise RuntimeError("the walk through the edge did not finish; see the lines above")
    finally:
        for proc in reversed(started):
            proc.terminate()
            proc.wait(30)
    typer.secho("\nDone. `shopflow audit` checks the invariants again at any time; `make down` stops the stack.",
                fg=typer.colors.GREEN)


def _saga(settings: Settings, codec: AvroCodec, count: int, step) -> None:
    run_id = uuid.uuid4().hex[:6]
    rng = random.Random(run_id)
    stock = {f"{run_id}-HEADPHONES": 25, f"{run_id}-LAMP": 10, f"{run_id}-KETTLE": 3, f"{run_id}-SOLD-OUT": 0}
    prices = {sku: price for sku, price in zip(stock, (4999, 2499, 3599, 1999))}
    client = SagaClient(settings, codec)
    reader = TopicReader(settings, codec, SAGA_TOPICS, from_end=True)

    step(f"stock seeded (StockAdjusted on stock-requests), run {run_id}")
    for sku, units in stock.items():
        if units:
            client.adjust_stock(sku, units)
        typer.echo(f"  {sku:<22} {units:>3} on hand")
    client.flush()

    step(f"{count} orders placed (PlaceOrder on order-commands)")
    placed = []
    for n in range(count):
        order_id = f"{run_id}-o{n:02d}"
        skus = rng.sample(sorted(stock), rng.choice([1, 1, 2]))
        token = rng.choices(["tok_approve", "tok_decline", "tok_insufficient"], [7, 2, 1])[0]
        client.place(order_id, [(sku, 1, prices[sku]) for sku in skus], token)
        placed.append(order_id)
    client.flush()

    paths: dict[str, list[str]] = defaultdict(list)
    # Broker timestamps (ms) of each order's PlaceOrder and terminal record: placed -> terminal latency.
    placed_ts: dict[str, int] = {}
    done_ts: dict[str, int] = {}
    events = []
    deadline = time.monotonic() + 120
    with typer.progressbar(length=count, label="  following orders to their end") as bar:
        while len(done_ts) < count and time.monotonic() < deadline:
            for topic, record, value, ts in reader.poll(0.3):
                order_id = value.get("order_id", "")
                if not order_id.startswith(run_id):
                    continue
                events.append((record, value))
                paths[order_id].append(record)
                if record == "PlaceOrder":
                    placed_ts[order_id] = ts
                if record in TERMINAL and order_id not in done_ts:
                    done_ts[order_id] = ts
                    bar.update(1)
    time.sleep(2)  # compensations (releases, refunds) answered after the terminal record
    for topic, record, value, _ in reader.poll(1.0):
        if value.get("order_id", "").startswith(run_id):
            events.append((record, value))
            paths[value["order_id"]].append(record)
    reader.close()
    client.close()

    step("each order's path through the topics")
    for order_id in placed:
        path = _compress(paths[order_id])
        end = next((v for r, v in reversed(events) if v.get("order_id") == order_id and r in TERMINAL), None)
        outcome = "STILL OPEN" if end is None else (
            "CONFIRMED" if "payment_id" in end else f"CANCELLED({end.get('reason')})")
        ms = done_ts[order_id] - placed_ts[order_id] if order_id in done_ts and order_id in placed_ts else float("nan")
        typer.echo(f"  {order_id}  {outcome:<26} {ms:6.0f} ms  {path}")

    step("the auditor's report")
    keep = lambda key: key.startswith(run_id)  # noqa: E731
    report = audit(events, read_changelog(settings, INVENTORY_TABLE, keep), read_changelog(settings, PAYMENTS_TABLE, keep),
                   now_ms=_now_ms(), stuck_after_ms=120_000, orders=read_changelog(settings, ORDERS_TABLE, keep),
                   settle_ms=5_000)
    typer.echo("  " + report.render().replace("\n", "\n  "))
    final = read_changelog(settings, INVENTORY_TABLE, keep)
    for sku in stock:
        s = final.get(sku, {"on_hand": 0, "reserved": 0})
        typer.echo(f"  {sku:<22} on_hand {s['on_hand']:>3}  reserved {s['reserved']}")
    if not report.ok:
        raise RuntimeError("the auditor found violations (above); see .shopflow/logs/worker-demo.log")


def _compress(records: list[str]) -> str:
    """PlaceOrder -> OrderPlaced -> ReserveStock x2 -> ...: repeated neighbours counted."""
    out: list[str] = []
    for r in records:
        if out and out[-1].split(" x")[0] == r:
            n = int(out[-1].split(" x")[1]) + 1 if " x" in out[-1] else 2
            out[-1] = f"{r} x{n}"
        else:
            out.append(r)
    return " -> ".join(out)


def _cdc(settings: Settings, codec: AvroCodec, step) -> None:
    step(f"Debezium: a catalog change through the PostgreSQL outbox into '{CATALOG_PRODUCTS.name}'")
    record = "shopflow.catalog.ProductUpserted"
    sku = f"SKU-DEMO-{uuid.uuid4().hex[:6].upper()}"
    product = {
        "event_id": str(uuid.uuid4()), "sku": sku, "version": 1, "name": "Demo headphones",
        "description": "Closed-back, wireless.", "brand": "Acme", "category": "audio/headphones",
        "price": {"amount_minor": 2499, "currency": "EUR"}, "attributes": {"colour": "black"}, "active": True,
        "occurred_at": _now_ms(),
    }
    payload = codec.encode(CATALOG_PRODUCTS.subject(record), load_schema(record), product)
    before = _end_offsets(settings, CATALOG_PRODUCTS.name, CATALOG_PRODUCTS.partitions)

    async def migrate_db() -> None:
        conn = await asyncpg.connect(settings.postgres_dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    async def write() -> None:
        conn = await asyncpg.connect(settings.postgres_dsn)
        try:
            await conn.execute(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES ($1, $2, $3, $4, $5)",
                uuid.UUID(product["event_id"]), CATALOG_PRODUCTS.name, sku, "ProductUpserted", payload,
            )
        finally:
            await conn.close()

    asyncio.run(migrate_db())  # the connector's publication is filtered to the outbox table: it must exist
    connector = load(CONNECTORS_DIR / "catalog-outbox.json")
    typer.echo(f"  connector {connector.name}: {ConnectClient(settings.connect_url).apply(connector)}, RUNNING")
    asyncio.run(write())
    typer.echo(f"  inserted outbox row for {sku}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = _end_offsets(settings, CATALOG_PRODUCTS.name, CATALOG_PRODUCTS.partitions)
        grown = [p for p in after if after[p] > before[p]]
        if grown:
            break
        time.sleep(0.3)
    else:
        raise RuntimeError("Debezium captured nothing in 60s; `shopflow connectors status` and .shopflow/logs/connect.log")
    captured = _read_at(settings, CATALOG_PRODUCTS.name, grown[0], before[grown[0]])
    row = codec.decode(captured.value())
    typer.echo(f"  captured {CATALOG_PRODUCTS.name}[{captured.partition()}]@{captured.offset()} key={captured.key().decode()} "
               f"headers={ {k: v.decode() for k, v in captured.headers() or []} }")
    typer.echo("  " + json.dumps({k: row[k] for k in ("sku", "name", "price", "version")}))
