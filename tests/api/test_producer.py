"""The edge's command producer on the real broker: every ``send`` is answered with its own delivery, whether
reports are served by the loop's pump (many in flight) or by the waiting thread (one at a time, idle loop)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from shopflow.api.producer import CommandProducer, ProduceError
from shopflow.schemas.orders import CancelOrder
from shopflow.topologies.catalog import ORDER_COMMANDS

pytestmark = pytest.mark.integration


@pytest.fixture
def producer(stack, codec):
    made = CommandProducer.connect(stack.bootstrap_servers, codec)
    yield made
    assert made.close() == 0


def cancel(order_id: str) -> CancelOrder:
    return CancelOrder(str(uuid.uuid4()), order_id, "u-test", datetime.now(UTC))


@pytest.fixture
def topic(topic_factory):
    return dataclasses.replace(ORDER_COMMANDS, name=topic_factory("commands", partitions=3))


async def test_many_in_flight_each_get_their_own_delivery(producer: CommandProducer, topic, consume):
    order_ids = [f"o-{i}" for i in range(200)]
    deliveries = await asyncio.gather(*(producer.send(topic, o, cancel(o)) for o in order_ids))
    # One distinct (partition, offset) per send: no future was resolved with another's report.
    assert len({(d.partition, d.offset) for d in deliveries}) == len(order_ids)
    assert {d.topic for d in deliveries} == {topic.name}
    assert producer._in_flight == 0
    keys = sorted(m.key().decode() for m in consume(topic.name, len(order_ids)))
    assert keys == sorted(order_ids)


async def test_sends_on_an_idle_loop_are_delivered_through_the_waiting_thread(producer: CommandProducer, topic):
    offsets = []
    for i in range(3):
        offsets.append((await producer.send(topic, "same-key", cancel(f"idle-{i}"))).offset)
        # Nothing in flight: the pump ends, so the next send finds an idle loop and starts a new one.
        assert producer._in_flight == 0 and producer._pump is not None
        await asyncio.wait_for(producer._pump, 5)
    assert offsets == sorted(offsets) and len(set(offsets)) == 3  # one key: one partition, in order


async def test_a_topic_the_broker_does_not_have_fails_the_send(stack, codec, topic):
    from confluent_kafka import Producer

    from shopflow.api.producer import edge_producer_config

    strict = CommandProducer(Producer({**edge_producer_config(stack.bootstrap_servers), "delivery.timeout.ms": 2000,
                                       "request.timeout.ms": 1000}), codec)
    missing = dataclasses.replace(topic, name=f"test-missing-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(ProduceError, match=missing.name):
            await strict.send(missing, "k", cancel("o-missing"))
        assert strict._in_flight == 0
    finally:
        strict.close(1)
