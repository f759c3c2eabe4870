"""Each server of the real stack, through the client the project uses for it."""

from __future__ import annotations

import time
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

    producer.produce(topic, key=b"o-1", value=codec.encode(f"{topic}-value", ORDER_NOTE, value))
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
    payload = codec.encode(f"{topic}-value", ORDER_NOTE, {"order_id": "o-42", "amount_minor": 500})
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


def test_search_indexes_and_finds_a_document(stack):
    from opensearchpy import OpenSearch

    client = OpenSearch(stack.search_url)
    index = f"test-products-{uuid.uuid4().hex[:8]}"
    try:
        client.indices.create(index=index, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
        client.index(index=index, id="sku-1", body={"name": "Wireless headphones", "brand": "Acme"}, refresh=True)
        client.index(index=index, id="sku-2", body={"name": "Desk lamp", "brand": "Lumo"}, refresh=True)

        hits = client.search(index=index, body={"query": {"match": {"name": "headphones"}}})["hits"]["hits"]
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)

    assert [h["_id"] for h in hits] == ["sku-1"]


def test_redis_keeps_a_value_until_its_ttl(stack):
    import redis

    r = redis.Redis.from_url(stack.redis_url)
    key = f"test:{uuid.uuid4().hex}"
    r.set(key, "v", px=300)

    assert r.get(key) == b"v"
    assert 0 < r.pttl(key) <= 300
    time.sleep(0.4)
    assert r.get(key) is None


async def test_postgres_answers_parameterised_queries_with_logical_wal(stack):
    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        assert await conn.fetchval("SELECT $1::int + $2::int", 40, 2) == 42
        assert await conn.fetchval("SHOW wal_level") == "logical"
        assert conn.get_server_version().major == 15
    finally:
        await conn.close()
