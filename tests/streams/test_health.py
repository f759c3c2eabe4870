"""A worker's /health/ page, on the real broker: Given running workers, Then it says they are healthy and
what each partition has processed but not committed; Given a broker that does not answer, Then it says so."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shopflow.streams.health import broker_reachable
from shopflow.topologies.catalog import ORDER_COMMANDS


def test_a_broker_that_does_not_answer_is_named_with_its_address():
    problem = broker_reachable("127.0.0.1:1", timeout_s=1.0)
    assert problem is not None and "127.0.0.1:1" in problem


@pytest.mark.integration
def test_a_running_worker_is_healthy_and_reports_its_partitions(stack, saga_workers):
    assert broker_reachable(stack.bootstrap_servers) is None
    bodies = [httpx.get(f"{url}/health/", timeout=10) for url in saga_workers]
    assert [r.status_code for r in bodies] == [200, 200], [r.text for r in bodies]
    partitions = {}
    for r in bodies:
        assert r.json()["status"] == "ok" and r.json()["problems"] == []
        partitions.update(r.json()["partitions"])
    # Between them the two workers hold every partition of the saga's input topics.
    assert {f"{ORDER_COMMANDS.name}/{p}" for p in range(ORDER_COMMANDS.partitions)} <= set(partitions)
    assert all(v["uncommitted"] >= 0 for v in partitions.values())


@pytest.mark.integration
def test_a_table_view_answers_for_a_key_no_record_has_written(stack, saga_workers):
    """Given workers that have written nothing to the carts table yet, When a cart nobody has is asked
    for, Then it is a 404 from the key's owner (it was a 500: the owner was looked up in metadata the
    producer had only after its first write there)."""
    for url in saga_workers:
        r = httpx.get(f"{url}/carts/nobody-{uuid.uuid4().hex}/", timeout=10, follow_redirects=True)
        assert r.status_code == 404, r.text
