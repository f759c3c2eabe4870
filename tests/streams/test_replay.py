"""The topology replay scenarios (tests/replay/scenarios/*.yaml), no broker, real RocksDB tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shopflow.streams.orders import GUARDS
from shopflow.streams.replay import murmur2_partition, run_scenario
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
