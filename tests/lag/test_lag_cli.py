"""`shopflow lag` and the lag metrics, as a user and Prometheus see them."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest


def shopflow_lag(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shopflow.cli", "lag", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_kafka_down_is_said_with_what_to_do_and_exit_3():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    proc = shopflow_lag(env={"SHOPFLOW_KAFKA_PORT": str(port)})

    assert proc.returncode == 3
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in proc.stderr and "shopflow stack status" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_group_the_broker_did_not_describe_is_shown_err_with_the_brokers_reason():
    from rich.console import Console

    from shopflow.cli.lag import EXIT_NOT_OK, exit_code, render
    from shopflow.lag import GroupLag, LagReport, Status

    report = LagReport(0.0, 20.0, True, [GroupLag("secret", "UNKNOWN", Status.ERR, [], [],
                                                  error="not authorized for group secret")])
    console = Console(width=200, record=True, file=io.StringIO())

    console.print(render(report))

    assert "not authorized for group secret" in console.export_text()
    assert exit_code(report) == EXIT_NOT_OK


@pytest.fixture
def lagging_group(group_factory, topic_factory, producer):
    """A group committed at the first of three records: lag 3."""
    from confluent_kafka import TopicPartition

    new_group, consumer = group_factory
    topic, group = topic_factory("lag-cli"), new_group()
    for n in range(3):
        producer.produce(topic, f"{n}".encode())
    producer.flush(10)
    consumer(group).commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    return group, topic


@pytest.mark.integration
def test_lag_of_one_group_as_json(lagging_group):
    group, topic = lagging_group

    proc = shopflow_lag(group, "--json")

    assert proc.returncode == 0, proc.stderr  # one sample: too early for any status but OK
    (g,) = json.loads(proc.stdout)["groups"]
    (p,) = g["partitions"]
    assert (g["group"], g["status"], p["topic"], p["committed"], p["end"], p["lag"]) == (group, "OK", topic, 0, 3, 3)
    assert p["lag_s"] is not None and p["estimated"] is False


@pytest.mark.integration
def test_lag_table_lists_every_group(lagging_group):
    group, topic = lagging_group

    proc = shopflow_lag()

    assert proc.returncode in (0, 2), proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:6] == ["group", "topic", "partition", "committed", "end", "LSO"]
    assert any(row.split()[:6] == [topic, "0", "0", "3", "3", "3"] for row in rows), proc.stdout


@pytest.mark.integration
def test_an_unknown_group_exits_1_with_the_groups_there_are(lagging_group):
    group, _ = lagging_group

    proc = shopflow_lag("no-such-group")

    assert proc.returncode == 1
    assert "no consumer group 'no-such-group'" in proc.stderr and group in proc.stderr


@pytest.mark.integration
def test_lag_metrics_pass_promtool(stack, lagging_group):
    from prometheus_client import CollectorRegistry, generate_latest

    from shopflow.lag import LagCollector

    group, topic = lagging_group
    collector = LagCollector(stack, start=False)
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        collector.sample_once()
        text = generate_latest(registry).decode()
    finally:
        collector.close()

    # (the exposition sorts label names)
    assert f'shopflow_consumer_lag{{group="{group}",partition="0",topic="{topic}"}} 3.0' in text
    assert f'shopflow_consumer_partition_status{{group="{group}",partition="0",status="OK",topic="{topic}"}} 1.0' \
        in text
    assert f'shopflow_consumer_group_status{{group="{group}",status="STALL"}} 0.0' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the stack's prometheus package: `make setup`"
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
