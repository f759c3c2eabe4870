"""The same replay scenarios, through two real workers and the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopflow.streams.replay import run_on_broker

pytestmark = pytest.mark.integration

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "replay" / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_on_the_broker(path, stack, saga_workers):
    outcome = run_on_broker(path, stack, saga_workers[0])
    assert outcome.ok, f"{outcome.name} on the broker:\n" + "\n".join(outcome.problems)
