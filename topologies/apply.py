"""Makes the broker agree with the topic catalog (``shopflow topics apply``), idempotently.

Missing topics are created; an existing topic gets its catalog configs (incremental alter) and
more partitions when the catalog has more. Fewer partitions cannot be had without recreating the
topic, which would lose data and break key placement, so that is reported and left alone.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

from shopflow.topologies.catalog import Topic, all_topics


def apply_topics(admin: AdminClient, topics: tuple[Topic, ...] | None = None, timeout_s: float = 30) -> list[str]:
    """Create or update every topic; return one line per change (empty when nothing changed)."""
    topics = topics or all_topics()
    existing = admin.list_topics(timeout=timeout_s).topics
    changes: list[str] = []

    new = [NewTopic(t.name, t.partitions, 1, config=t.configs) for t in topics if t.name not in existing]
    for name, future in (admin.create_topics(new) if new else {}).items():
        try:
            future.result(timeout=timeout_s)
            changes.append(f"created {name}")
        except KafkaException as exc:
            # Another process (a second worker starting) created it between our listing and creating.
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    present = [t for t in topics if t.name in existing]
    if not present:
        return changes
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t.name) for t in present]
    described = {r.name: cfg.result(timeout=timeout_s) for r, cfg in admin.describe_configs(resources).items()}
    for topic in present:
        current = {k: v.value for k, v in described[topic.name].items()}
        drift = {k: v for k, v in topic.configs.items() if current.get(k) != v}
        if drift:
            resource = ConfigResource(
                ConfigResource.Type.TOPIC, topic.name,
                incremental_configs=[ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                                     for k, v in drift.items()],
            )
            for future in admin.incremental_alter_configs([resource]).values():
                future.result(timeout=timeout_s)
            changes.append(f"updated {topic.name}: " + ", ".join(f"{k}={v}" for k, v in drift.items()))
        have = len(existing[topic.name].partitions)
        if have < topic.partitions:
            for future in admin.create_partitions([NewPartitions(topic.name, topic.partitions)]).values():
                future.result(timeout=timeout_s)
            changes.append(f"updated {topic.name}: partitions {have} -> {topic.partitions}")
        elif have > topic.partitions:
            changes.append(
                f"warning {topic.name}: has {have} partitions, the catalog says {topic.partitions}; "
                "partitions cannot be removed (recreate the topic deliberately if that is meant)"
            )
    return changes
