"""The main job a newcomer runs with ``make demo``: orders through the saga, for real.

It starts a Faust worker (unless one runs), seeds stock, places a few dozen orders (some for skus
out of stock, some with cards that are declined), follows each order through the topics and prints
its path and outcome, then the auditor's report on the invariants. Then a catalog change goes
through the PostgreSQL outbox and Debezium into its topic, and last a client app walks through the
REST edge (started with the orders read model's projection, the image agent and the search indexer):
an admin gives a product a photo whose thumbnails show in its search hit, and a customer registers,
fills a cart, checks out and follows its order to the outcome.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import defaultdict

import typer
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from shopflow import edge_demo
from shopflow.catalog import Catalog, ProductInput
from shopflow.connectors.apply import CONNECTORS_DIR, ConnectClient, load
from shopflow.db import migrate_database
from shopflow.launch import AlreadyRunning, HealthCheck, ShopflowProcess, edge_health, ops_health, worker_health
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

    def next_message() -> Message | None:
        msg = consumer.poll(0.5)  # waits for a record itself: no pause between tries
        return msg if msg is not None and not msg.error() else None

    try:
        return Retrying(stop=stop_after_delay(timeout_s), retry=retry_if_result(lambda msg: msg is None))(next_message)
    except RetryError:
        raise RuntimeError(f"nothing arrived on {topic}[{partition}]@{offset} in {timeout_s}s; "
                           "see .shopflow/logs/") from None
    finally:
        consumer.close()


def _end_offsets(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "demo-offsets"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()


def _start(settings: Settings, name: str, args: list[str], health: HealthCheck | None = None) -> list[ShopflowProcess]:
    """``shopflow <args>`` for the demo's lifetime, once its health route says it is ready (at once, without
    one); nothing when something already serves on that route's port (a worker or edge of the user's)."""
    proc = ShopflowProcess(name, args, settings.log_dir / f"{name}-demo.log", health=health)
    try:
        proc.start()
    except AlreadyRunning:
        proc.close()
        typer.echo(f"  a {name} is already running; using it")
        return []
    typer.echo(f"  {name} started (pid {proc.pid}, log {proc.log_path})")
    return [proc]


def run(settings: Settings, orders: int = 36) -> None:
    step = lambda text: typer.secho(f"\n== {text}", bold=True)  # noqa: E731

    step("topics and schemas: the catalog applied to the broker, every schema registered")
    for line in apply_topics(AdminClient({"bootstrap.servers": settings.bootstrap_servers})) or ["topics up to date"]:
        typer.echo("  " + line)
    codec = AvroCodec(SchemaRegistry(settings.registry_url))
    typer.echo(f"  {len(register_all(codec.registry))} subjects registered (BACKWARD)")

    step("a Faust worker running the saga's agents")
    started = _start(settings, "worker", ["worker"], worker_health(settings))
    # Saga health, connectors, dead letters and freshness as metrics while the demo runs (streams/monitor.py).
    started += _start(settings, "monitor", ["monitor"])
    try:
        _saga(settings, codec, orders, step)
        _cdc(settings, codec, step)
        step("a client app through the REST edge: a product photo, register, cart, checkout, follow the order")
        started += _start(settings, "projection", ["projection"])
        # The product's photo: the image agent makes its thumbnails, the indexer puts them in its search hit.
        started += _start(settings, "images", ["images"])
        started += _start(settings, "indexer", ["indexer"])
        started += _start(settings, "edge", ["api"], edge_health(settings))
        started += _start(settings, "ops", ["ops"], ops_health(settings))
        # The customer's e-mail about the order: the agent requests it, the sender delivers it to mailpit.
        started += _start(settings, "notifications", ["notifications"])
        started += _start(settings, "notifier", ["notifier"])
        typer.echo(f"  ops console on http://{settings.host}:{settings.ops_port}/ while the demo runs (`shopflow ops` "
                   "serves it after): sign in as a user with the ops role, `shopflow users grant EMAIL ops`")
        edge_url = f"http://{settings.host}:{settings.api_port}"
        if not edge_demo.run(settings, edge_url, say=lambda line: typer.echo("  " + line)):
            raise RuntimeError("the walk through the edge did not finish; see the lines above")
    finally:
        for proc in reversed(started):
            proc.close()
    typer.secho("\nDone. `shopflow audit` checks the invariants again at any time; `make down` stops the stack.",
                fg=typer.colors.GREEN)


def _saga(settings: Settings, codec: AvroCodec, count: int, step) -> None:
    run_id = uuid.uuid4().hex[:6]
    rng = random.Random(run_id)
    stock = {f"{run_id}-HEADPHONES": 25, f"{run_id}-LAMP": 10, f"{run_id}-KETTLE": 3, f"{run_id}-SOLD-OUT": 0}
    prices = dict(zip(stock, (4999, 2499, 3599, 1999), strict=True))
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
            for _, record, value, ts in reader.poll(0.3):
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

    def settled() -> bool:
        """The commits, releases and refunds that follow the terminal records read too: every reservation of
        an ended order consumed or released, every capture kept or refunded (the auditor, on the records)."""
        for _, record, value, _ in reader.poll(0.3):
            if value.get("order_id", "").startswith(run_id):
                events.append((record, value))
                paths[value["order_id"]].append(record)
        return not audit(events).violations

    # Not settled within the time: the auditor's report below says what is missing.
    Retrying(stop=stop_after_delay(30), retry=retry_if_result(lambda done: not done),
             retry_error_callback=lambda _: False)(settled)
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
    report = audit(events, read_changelog(settings, INVENTORY_TABLE, keep),
                   read_changelog(settings, PAYMENTS_TABLE, keep), now_ms=_now_ms(), stuck_after_ms=120_000,
                   orders=read_changelog(settings, ORDERS_TABLE, keep), settle_ms=5_000)
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
    sku = f"SKU-DEMO-{uuid.uuid4().hex[:6].upper()}"
    product = ProductInput(sku=sku, name="Demo headphones", description="Closed-back, wireless.", brand="Acme",
                           category="audio/headphones", price_minor=2499, currency="EUR",
                           attributes={"colour": "black"})
    before = _end_offsets(settings, CATALOG_PRODUCTS.name, CATALOG_PRODUCTS.partitions)

    async def write() -> int:
        # Through the catalog, as the edge writes: the row in `products` and its event in one transaction.
        catalog = await Catalog.open(settings, codec, cache=False, pool_size=1)
        try:
            await catalog.ensure_category_path(product.category or "")
            return (await catalog.create_product(product)).version
        finally:
            await catalog.close()

    # The connector's publication is filtered to the outbox table: it must exist.
    asyncio.run(migrate_database(settings))
    connector = load(CONNECTORS_DIR / "catalog-outbox.json")
    typer.echo(f"  connector {connector.name}: {ConnectClient(settings.connect_url).apply(connector)}, RUNNING")
    version = asyncio.run(write())
    typer.echo(f"  created product {sku} v{version} (its row and its outbox event in one transaction)")

    def grown() -> list[int]:
        after = _end_offsets(settings, CATALOG_PRODUCTS.name, CATALOG_PRODUCTS.partitions)
        return [p for p in after if after[p] > before[p]]

    try:
        partitions = Retrying(stop=stop_after_delay(60), wait=wait_fixed(0.3),
                              retry=retry_if_result(lambda found: not found))(grown)
    except RetryError:
        raise RuntimeError("Debezium captured nothing in 60s; `shopflow connectors status` and "
                           ".shopflow/logs/connect.log") from None
    captured = _read_at(settings, CATALOG_PRODUCTS.name, partitions[0], before[partitions[0]])
    row = codec.decode(captured.value())
    typer.echo(f"  captured {CATALOG_PRODUCTS.name}[{captured.partition()}]@{captured.offset()} "
               f"key={captured.key().decode()} headers={ {k: v.decode() for k, v in captured.headers() or []} }")
    typer.echo("  " + json.dumps({k: row[k] for k in ("sku", "name", "price", "version")}))
