"""The real servers as ShopFlow uses them: through its own clients, with the configuration its launcher writes."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

pytestmark = pytest.mark.integration

ORDER_NOTE = {
    "type": "record", "name": "OrderNote", "namespace": "shopflow.test", "doc": "A test record.",
    "fields": [{"name": "order_id", "type": "string"}, {"name": "amount_minor", "type": "long"}],
}


def test_kafka_carries_a_registry_framed_avro_value(topic_factory, producer, consume, codec, registry):
    topic = topic_factory("avro")
    value = {"order_id": "o-1", "amount_minor": 1999}

    producer.produce(topic, key=b"o-1", value=codec.encode_value(f"{topic}-value", ORDER_NOTE, value))
    assert producer.flush(10) == 0
    [msg] = consume(topic, 1)

    assert msg.key() == b"o-1"
    assert msg.value()[0] == 0  # Confluent magic byte
    assert registry.schema_by_id(codec.schema_id(msg.value()))["name"] == "OrderNote"
    assert codec.decode(msg.value()) == value


def test_registry_accepts_a_backward_change_and_rejects_a_breaking_one(registry):
    from shopflow.schemas.registry import IncompatibleSchema

    subject = f"test-compat-{uuid.uuid4().hex[:8]}-value"
    registry.set_compatibility("BACKWARD", subject)
    first = registry.register(subject, ORDER_NOTE)
    breaking = {**ORDER_NOTE, "fields": [*ORDER_NOTE["fields"], {"name": "currency", "type": "string"}]}
    compatible = {**ORDER_NOTE, "fields": [*ORDER_NOTE["fields"],
                                           {"name": "currency", "type": ["null", "string"], "default": None}]}

    assert registry.is_compatible(subject, breaking) is False
    with pytest.raises(IncompatibleSchema, match="currency"):
        registry.register(subject, breaking)
    assert registry.is_compatible(subject, compatible) is True
    second = registry.register(subject, compatible)

    assert second != first
    assert registry.latest(subject)["id"] == second


async def test_debezium_captures_an_outbox_insert_into_its_topic(stack, topic_factory, consume, codec):
    from shopflow.connectors.apply import CONNECTORS_DIR, ConnectClient, load
    from shopflow.db import migrate

    topic = topic_factory("outbox", partitions=3)
    payload = codec.encode_value(f"{topic}-value", ORDER_NOTE, {"order_id": "o-42", "amount_minor": 500})
    event_id = uuid.uuid4()

    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        await migrate(conn)  # the connector's publication is filtered to the outbox table: it must exist
        ConnectClient(stack.connect_url).apply(load(CONNECTORS_DIR / "catalog-outbox.json"))
        await conn.execute(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES ($1, $2, $3, $4, $5)",
            event_id, topic, "o-42", "OrderNote", payload,
        )
    finally:
        await conn.close()
    [msg] = consume(topic, 1, timeout_s=60)

    assert msg.key() == b"o-42"
    assert msg.value() == payload
    assert codec.decode(msg.value())["order_id"] == "o-42"
    headers = dict(msg.headers())
    assert headers["event_type"] == b"OrderNote"
    assert str(event_id).encode() in headers["event_id"]


async def test_postgres_runs_as_the_stack_configured_it(stack):
    """What the launcher sets up (deploy/system_servers.py): logical WAL for Debezium, the pinned major
    version, the project's role with REPLICATION, and the registry's own database."""
    from shopflow.deploy.fetch import VERSIONS
    from shopflow.deploy.servers import REGISTRY_DB

    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        assert await conn.fetchval("SHOW wal_level") == "logical"
        assert str(conn.get_server_version().major) == VERSIONS["debian"]["postgresql"]
        assert await conn.fetchval("SELECT rolreplication FROM pg_roles WHERE rolname = current_user") is True
        assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", REGISTRY_DB) == 1
    finally:
        await conn.close()
