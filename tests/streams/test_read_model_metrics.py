"""The read-model feeds' metrics: the orders projection's records by outcome and its batches after
real events; and the indexer and projection processes, each found through its target file, serving
``/metrics`` that promtool's lint accepts, and gone from Prometheus's targets once stopped."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import NewTopic
from metrics_lint import promtool_check, total
from polling import eventually, eventually_async
from pydantic import SecretStr

from shopflow.launch import ShopflowProcess
from shopflow.metrics import exposition
from shopflow.schemas.orders import OrderPlaced
from shopflow.schemas.records import Money, OrderLine
from shopflow.streams.order_projection import OrderProjection
from shopflow.topologies.catalog import ORDERS

pytestmark = pytest.mark.integration


def _placed(order_id: str) -> OrderPlaced:
    lines = (OrderLine("SKU-A", 1, Money(100, "EUR")),)
    return OrderPlaced(str(uuid.uuid4()), order_id, "u-1", lines, Money(100, "EUR"), "tok", datetime.now(UTC))


def _feed(name: str, **labels: str) -> float:
    return total(exposition().decode(), name, feed="orders-view", **labels)


@pytest.fixture
def settings(stack, pg_schema_factory):
    return stack.model_copy(update={"postgres_schema": pg_schema_factory("projmetrics"),
                                    "jwt_secret": SecretStr("x" * 40)})


async def test_the_projection_counts_records_by_outcome_and_its_batches(settings, topic_factory, admin, producer,
                                                                        codec):
    # Given a projection on a fresh orders topic, in a throwaway schema
    topic = topic_factory("orders", partitions=1)
    admin.create_topics([NewTopic(f"{topic}.dlq", 1, 1)])[f"{topic}.dlq"].result(timeout=30)
    outcomes = ("applied", "duplicate", "dead-lettered")
    before = {o: _feed("shopflow_read_model_records_total", outcome=o) for o in outcomes}
    batches = _feed("shopflow_read_model_batches_total")
    projection = OrderProjection(settings, codec, topic=topic, group_id=f"test-{uuid.uuid4().hex}")
    stop = asyncio.Event()
    running = asyncio.create_task(projection.run(stop))

    # When two orders arrive, one of them twice, and a record that is not Avro
    first, second = _placed(f"o-{uuid.uuid4().hex[:8]}"), _placed(f"o-{uuid.uuid4().hex[:8]}")
    for event in (first, second, first):
        producer.produce(topic, key=event.order_id.encode(), value=codec.encode(ORDERS, event))
    producer.produce(topic, key=b"poison", value=b"not avro")
    assert producer.flush(10) == 0

    # Then each outcome is counted, in batches
    async def counted() -> bool:
        grown = {o: _feed("shopflow_read_model_records_total", outcome=o) - before[o] for o in outcomes}
        assert grown == {"applied": 2, "duplicate": 1, "dead-lettered": 1}, grown
        return True

    try:
        await eventually_async(counted, timeout_s=60)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        admin.delete_topics([f"{topic}.dlq"])[f"{topic}.dlq"].result(timeout=30)
    assert _feed("shopflow_read_model_batches_total") > batches
    assert _feed("shopflow_read_model_batch_seconds_count") >= 1
    promtool_check(exposition().decode())


@pytest.mark.parametrize("command", ["indexer", "projection"])
def test_each_read_model_process_is_a_target_whose_metrics_pass_the_lint(stack, tmp_path: Path, command: str):
    # Given the process running, with the stack's settings
    proc = ShopflowProcess(command, [command], tmp_path / f"{command}.log")
    proc.start()
    try:
        target = stack.targets_dir / f"{command}-{proc.pid}.json"

        def registered() -> str:
            assert target.exists(), f"{target} not written yet"
            address: str = json.loads(target.read_text())[0]["targets"][0]
            return address

        address = eventually(registered, 60, what=f"{target} written by the {command}")

        # When Prometheus would scrape it, once its feed runs
        def scraped() -> str:
            text = httpx.get(f"http://{address}/metrics", timeout=5).text
            assert "# HELP shopflow_read_model_batches_total" in text, text[-400:]
            return text

        text = eventually(scraped, 60, what=f"the {command}'s feed metrics")

        # Then promtool accepts what it serves
        promtool_check(text)
    finally:
        proc.close()
    # and it is no longer a target once stopped
    assert not target.exists()
