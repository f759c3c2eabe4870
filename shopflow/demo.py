"""The main job a newcomer runs with ``make demo``.

Until the order saga runs end to end, it shows the stack carrying ShopFlow's contracts: an
OrderPlaced event written with the project's codec to the ``orders`` topic and read back, and a
catalog change written to the PostgreSQL outbox and captured by Debezium into ``catalog.products``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg
import typer
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from shopflow.connectors.apply import CONNECTORS_DIR, ConnectClient, load
from shopflow.db import migrate
from shopflow.schemas import load_schema
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings
from shopflow.topologies.apply import apply_topics
from shopflow.topologies.catalog import CATALOG_PRODUCTS, ORDERS


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


def run(settings: Settings) -> None:
    step = lambda text: typer.secho(f"\n== {text}", bold=True)  # noqa: E731

    step("topics: the catalog applied to the broker")
    for line in apply_topics(AdminClient({"bootstrap.servers": settings.bootstrap_servers})) or ["up to date"]:
        typer.echo("  " + line)

    codec = AvroCodec(SchemaRegistry(settings.registry_url))
    step(f"Avro through the registry: an OrderPlaced on '{ORDERS.name}'")
    record = "shopflow.orders.OrderPlaced"
    order_id = f"demo-{uuid.uuid4().hex[:8]}"
    money = {"amount_minor": 2499, "currency": "EUR"}
    event = {
        "event_id": str(uuid.uuid4()), "order_id": order_id, "user_id": "u-demo",
        "lines": [{"sku": "SKU-HEADPHONES", "quantity": 1, "unit_price": money}],
        "total": money, "payment_token": "tok_approve", "occurred_at": _now_ms(),
    }
    value = codec.encode(ORDERS.subject(record), load_schema(record), event)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    delivered = []
    producer.produce(ORDERS.name, key=order_id.encode(), value=value, on_delivery=lambda err, msg: delivered.append((err, msg)))
    producer.flush(10)
    err, msg = delivered[0]
    if err:
        raise RuntimeError(f"produce failed: {err}")
    typer.echo(f"  produced {len(value)} bytes to {ORDERS.name}[{msg.partition()}]@{msg.offset()}, "
               f"schema id {codec.schema_id(value)} (subject {ORDERS.subject(record)})")
    back = _read_at(settings, ORDERS.name, msg.partition(), msg.offset())
    decoded = codec.decode(back.value())
    typer.echo(f"  consumed and decoded: order {decoded['order_id']}, total {decoded['total']}")

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
    typer.secho("\nThe stack is up and carrying ShopFlow's contracts. `shopflow stack status` shows it; "
                "`make down` stops it.", fg=typer.colors.GREEN)
