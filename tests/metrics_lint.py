"""Checks on a process's ``/metrics`` text shared by the metrics tests: ``promtool check metrics``
(Prometheus's own lint of names, units and help) and the samples of one metric family.

A plain module (tests/ is on ``sys.path``): ``from metrics_lint import promtool_check, samples``.
"""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families


def promtool_check(text: str) -> None:
    """Fails with promtool's complaints when the exposition does not pass its lint."""
    promtool = shutil.which("promtool")
    assert promtool, ("promtool not found: install Debian's prometheus package "
                      "(apt-get install -y --no-install-recommends prometheus)")
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"promtool check metrics: {done.stdout}{done.stderr}"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named ``name`` (``shopflow_x_total``, ``shopflow_y_seconds_count``...), by their labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(value for key, value in samples(text, name).items() if set(labels.items()) <= set(key))
