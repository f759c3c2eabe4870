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


def test_topics_list_is_a_table_of_the_catalog():
    from shopflow.topologies.catalog import all_topics

    proc = subprocess.run([sys.executable, "-m", "shopflow.cli", "topics", "list"], capture_output=True, text=True)

    assert proc.returncode == 0, proc.stderr
    header, rule, *rows = proc.stdout.splitlines()
    assert header.split()[:3] == ["topic", "key", "partitions"]
    assert set(rule.strip()) == {"─"}
    assert [row.split()[:3] for row in rows] == [[t.name, t.key, str(t.partitions)] for t in all_topics()]
