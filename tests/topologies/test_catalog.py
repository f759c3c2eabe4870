"""The topic catalog: consistent with the schemas, and what the broker holds after `topics apply`."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import ConfigResource
from polling import eventually

from shopflow.schemas import all_schemas
from shopflow.schemas.orders import PlaceOrder
from shopflow.topologies.apply import apply_topics
from shopflow.topologies.catalog import SAGA_PARTITIONS, TOPICS, all_topics, by_name


@pytest.mark.parametrize("topic", TOPICS, ids=[t.name for t in TOPICS])
def test_every_value_has_a_schema_that_carries_the_key(topic):
    schemas = all_schemas()
    for record in topic.record_names:
        fields = [f["name"] for f in schemas[record]["fields"]]
        assert topic.key in fields, f"{record} on {topic.name} has no {topic.key} to key by"
        assert "event_id" in fields


def test_every_schema_is_carried_by_exactly_one_topic():
    carried = [record for t in TOPICS for record in t.record_names]
    assert sorted(carried) == sorted(all_schemas())


def test_every_topic_has_its_dead_letter_topic():
    names = {t.name for t in all_topics()}
    assert all(t.dead_letter in names for t in TOPICS)


def test_topics_keyed_by_order_share_a_partition_count():
    # The orders table is co-partitioned with every topic that feeds it.
    assert {t.partitions for t in TOPICS if t.key == "order_id"} == {SAGA_PARTITIONS}


def test_a_record_on_the_wrong_topic_is_refused():
    with pytest.raises(KeyError, match="orders does not carry shopflow.orders.PlaceOrder"):
        by_name("orders").subject(PlaceOrder)


@pytest.mark.integration
def test_broker_agrees_with_the_catalog_after_apply(admin):
    apply_topics(admin)
    assert apply_topics(admin) == []  # idempotent: a second apply changes nothing

    metadata = admin.list_topics(timeout=10).topics
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t.name) for t in all_topics()]
    configs = {r.name: f.result(timeout=10) for r, f in admin.describe_configs(resources).items()}
    for topic in all_topics():
        assert len(metadata[topic.name].partitions) == topic.partitions, topic.name
        assert configs[topic.name]["cleanup.policy"].value == topic.cleanup_policy
        assert configs[topic.name]["retention.ms"].value == str(topic.retention_ms)


@pytest.mark.integration
def test_apply_restores_a_config_that_drifted(admin):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    apply_topics(admin)
    drifted = ConfigResource(ConfigResource.Type.TOPIC, "notifications", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([drifted]).values():
        f.result(timeout=10)
    _wait_for_config(admin, "notifications", "retention.ms", "1000")

    assert apply_topics(admin) == [f"updated notifications: retention.ms={by_name('notifications').retention_ms}"]


def _wait_for_config(admin, topic: str, key: str, value: str, timeout_s: float = 15) -> None:
    """An altered config reaches describe_configs once the broker has applied the metadata record."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)

    def applied() -> bool:
        return admin.describe_configs([resource])[resource].result(timeout=10)[key].value == value

    eventually(applied, timeout_s, what=f"{topic} {key}={value}")


@pytest.mark.integration
def test_two_applies_racing_both_succeed(stack):
    """Workers starting together each apply the catalog; the one that loses the creation race is fine."""
    from concurrent.futures import ThreadPoolExecutor

    from confluent_kafka.admin import AdminClient

    from shopflow.topologies.catalog import Topic

    topics = tuple(Topic(f"test-race-{i}-{uuid.uuid4().hex[:6]}", "k", (), 2, "race") for i in range(5))
    admins = [AdminClient({"bootstrap.servers": stack.bootstrap_servers}) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda a: apply_topics(a, topics), admins))
        assert sorted(line for r in results for line in r if line.startswith("created")) == sorted(
            f"created {t.name}" for t in topics)
    finally:
        for f in admins[0].delete_topics([t.name for t in topics]).values():
            f.result(timeout=30)
