"""The `shopflow` command itself: bad settings stop it with what to fix, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("env,expected", [
    ({"SHOPFLOW_SEARCH_PORT": "19200"}, "SHOPFLOW_SEARCH_PORT='19200': Input should be less than or equal to 9299"),
    ({"SHOPFLOW_KAFKA_PORT": "ninety"}, "SHOPFLOW_KAFKA_PORT='ninety': Input should be a valid integer"),
])
def test_a_bad_setting_is_named_with_its_value(env, expected):
    proc = subprocess.run([sys.executable, "-m", "shopflow.cli", "topology", "check"],
                          env={**os.environ, **env}, capture_output=True, text=True)

    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_topology_check_passes_on_the_declared_saga():
    proc = subprocess.run([sys.executable, "-m", "shopflow.cli", "topology", "check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "every effect has a compensation" in proc.stdout
