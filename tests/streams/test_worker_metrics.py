"""A real worker's /metrics after orders flow: records in and out by topic, batch time by agent,
commits, rebalances, table keys and dead letters; registered for Prometheus; promtool's lint passes."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from metrics_lint import promtool_check, total
from polling import eventually

from shopflow.schemas.deadletter import dead_letter_topic
from shopflow.streams.client import SagaClient
from shopflow.topologies.catalog import ORDER_COMMANDS, STOCK_REQUESTS

pytestmark = pytest.mark.integration

ORDERS = 20


def _scrape_all(urls: list[str]) -> list[str]:
    texts = []
    for url in urls:
        response = httpx.get(f"{url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        texts.append(response.text)
    return texts


def _sum(texts: list[str], name: str, **labels: str) -> float:
    return sum(total(text, name, **labels) for text in texts)


def test_orders_flowing_show_in_the_workers_metrics(stack, saga_workers, codec, producer):
    # Given the two workers' counts, and a sku in stock
    before = _scrape_all(saga_workers)
    run = uuid.uuid4().hex[:8]
    client = SagaClient(stack, codec)
    client.seed_stock({f"{run}-SKU": 1000})

    # When orders are placed, and one record on the commands topic is not Avro at all
    for n in range(ORDERS):
        client.place(f"{run}-o{n:02d}", [(f"{run}-SKU", 1, 500)])
    client.flush()
    producer.produce(ORDER_COMMANDS.name, key=f"{run}-poison".encode(), value=b"not avro")
    producer.flush(10)

    # Then, between the workers: what came in and went out, and the time it took
    def grew(name: str, by: float, **labels: str) -> None:
        now = _scrape_all(saga_workers)
        assert _sum(now, name, **labels) - _sum(before, name, **labels) >= by, name

    def flowed() -> list[str]:
        grew("shopflow_events_in_total", ORDERS + 1, topic=ORDER_COMMANDS.name)
        grew("shopflow_events_out_total", ORDERS, topic=STOCK_REQUESTS.name)
        grew("shopflow_processing_seconds_count", 1, agent="orders")
        grew("shopflow_processing_seconds_count", 1, agent="inventory")
        grew("shopflow_commit_seconds_count", 1)
        grew("shopflow_dead_letters_total", 1, topic=dead_letter_topic(ORDER_COMMANDS.name))
        return _scrape_all(saga_workers)

    after = eventually(flowed, 60, what="the orders counted in the workers' metrics")
    client.close()
    assert _sum(after, "shopflow_rebalances_total") >= 2  # each worker joined its group at least once
    assert _sum(after, "shopflow_table_keys", table="orders") >= ORDERS
    assert _sum(after, "shopflow_table_keys", table="inventory") >= 1
    for text in after:
        assert run not in text  # no order id or sku as a label
        promtool_check(text)


def test_each_worker_is_a_prometheus_target(stack, saga_workers):
    registered = {target for path in stack.targets_dir.glob("worker-*.json")
                  for entry in json.loads(path.read_text()) for target in entry["targets"]}

    assert {url.removeprefix("http://") for url in saga_workers} <= registered
