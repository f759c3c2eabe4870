"""The same replay scenarios, through two real workers and the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shopflow.streams.replay_broker import run_on_broker

pytestmark = pytest.mark.integration

# A crash step kills the harness's in-process worker at an exact point; on the broker, killing workers
# is test_saga_crash.py's business.
SCENARIOS = [p for p in sorted((Path(__file__).resolve().parents[1] / "replay" / "scenarios").glob("*.yaml"))
             if not any("crash" in step for step in yaml.safe_load(p.read_text()).get("when") or [])]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_on_the_broker(path, stack, saga_workers):
    outcome = run_on_broker(path, stack, saga_workers[0])
    assert outcome.ok, f"{outcome.name} on the broker:\n" + "\n".join(outcome.problems)
