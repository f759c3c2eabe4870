"""Throwaway consumer groups for the lag tests, deleted at the end (else `shopflow lag` lists them for a week)."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def group_factory(stack, admin):
    """``new_group()``: a fresh group id; ``consumer(group)``: a consumer of it that commits by hand. The
    groups are deleted at the end (else `shopflow lag` would list them for a week)."""
    from confluent_kafka import Consumer

    made: list[Consumer] = []
    groups: list[str] = []

    def new_group() -> str:
        groups.append(f"test-lag-{uuid.uuid4().hex[:8]}")
        return groups[-1]

    def consumer(group: str) -> Consumer:
        c = Consumer({"bootstrap.servers": stack.bootstrap_servers, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "isolation.level": "read_committed"})
        made.append(c)
        return c

    yield new_group, consumer
    for c in made:
        c.close()  # a second close (of one a test closed) is a no-op
    delete_groups(admin, groups)


def delete_groups(admin, groups: list[str]) -> None:
    from confluent_kafka import KafkaError, KafkaException

    for deleted in admin.delete_consumer_groups(groups).values() if groups else ():
        try:
            deleted.result(timeout=30)
        except KafkaException as exc:  # a group that never committed is gone with its last member
            if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                raise
