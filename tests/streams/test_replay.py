"""The topology replay scenarios (tests/replay/scenarios/*.yaml), no broker, real RocksDB tables."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
import yaml

from shopflow.streams.orders import GUARDS
from shopflow.streams.replay import Crash, murmur2_partition, run_scenario
from shopflow.topologies.saga import ORDER_SAGA, Transition

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "replay" / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_scenario(path, tmp_path):
    outcome = await run_scenario(path, store=tmp_path)
    assert outcome.ok, f"{outcome.name}:\n" + "\n".join(outcome.problems)


def test_the_required_scenarios_are_there():
    names = {yaml.safe_load(p.read_text())["name"] for p in SCENARIOS}
    assert {
        "happy path", "out of stock on one line of three", "payment declined", "payment timeout",
        "cancel before payment", "cancel after payment", "duplicated and redelivered events",
        "two orders racing for the last unit",
    } <= names


async def test_a_wrong_expectation_fails_with_a_readable_diff(tmp_path):
    doc = yaml.safe_load(SCENARIOS[[p.stem for p in SCENARIOS].index("happy_path")].read_text())
    doc["then"]["emitted"][-1] = "CommitStock SKU-Z"
    doc["then"]["stock"]["SKU-A"]["on_hand"] = 99
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))

    outcome = await run_scenario(broken, store=tmp_path / "store")

    assert not outcome.ok
    assert "stock SKU-A: on_hand expected 99, got 3" in outcome.problems
    diff = next(p for p in outcome.problems if p.startswith("records emitted differ"))
    assert "-CommitStock SKU-Z" in diff and "+CommitStock SKU-B" in diff


def test_every_guard_the_saga_names_has_a_meaning():
    named = {t.guard for t in ORDER_SAGA.transitions if isinstance(t, Transition) and t.guard}
    assert named == set(GUARDS)


@pytest.mark.parametrize("key,partitions,expected", [
    # What org.apache.kafka.common.utils.Utils.murmur2 (3.9.1) gives, so tables sit where the broker puts records.
    (b"SKU-A", 6, 4), (b"o-1", 6, 0), (b"", 6, 3), (b"abc", 3, 0), (b"SKU-LAST", 6, 5), (b"order-123456", 6, 4),
])
def test_keys_are_placed_as_kafka_places_them(key, partitions, expected):
    assert murmur2_partition(key, partitions) == expected


def _crash_points(scenario: str) -> list:
    """Every record the agents handle in a scenario, times every point a worker can die at while handling it."""
    path = SCENARIOS[[p.stem for p in SCENARIOS].index(scenario)]
    with tempfile.TemporaryDirectory() as tmp:
        clean = asyncio.run(run_scenario(path, store=Path(tmp)))
    assert clean.ok, clean.problems
    points = []
    for record, key, nth, caused, writes in clean.deliveries:
        points += [Crash(record, key, "state", nth=nth), Crash(record, key, "commit", nth=nth),
                   Crash(record, key, "lost-state", nth=nth)]
        points += [Crash(record, key, "output", k=k, nth=nth) for k in range(1, caused)]
        points += [Crash(record, key, "writes", k=k, nth=nth) for k in range(1, writes)]
        points.append(Crash(record, key, "commit", nth=nth, uncommitted=3))
    return [(path, c) for c in points]


CRASHES = [point for scenario in ("happy_path", "payment_declined", "out_of_stock_one_line_of_three")
           for point in _crash_points(scenario)]


@pytest.mark.parametrize("path,crash", CRASHES, ids=[
    f"{p.stem}-{c.record}-{c.key}#{c.nth}-{c.at}{c.k or ''}{'-uncommitted' if c.uncommitted else ''}"
    for p, c in CRASHES])
async def test_a_crash_at_any_point_changes_no_outcome(path, crash, tmp_path):
    """Given a scenario, When a worker dies at this point and restarts from its committed offsets and
    the changelog, Then the scenario's Then holds as if it had not."""
    outcome = await run_scenario(path, store=tmp_path, crash=crash)
    assert outcome.ok, f"{outcome.name} with {crash}:\n" + "\n".join(outcome.problems)


def test_the_crash_points_cover_every_record_of_the_happy_path():
    handled = {(c.record, c.at) for p, c in CRASHES if p.stem == "happy_path"}
    records = ("PlaceOrder", "ReserveStock", "StockReserved", "PaymentRequested", "PaymentSucceeded", "CommitStock")
    for record in records:
        assert {(record, at) for at in ("state", "commit", "lost-state")} <= handled
