"""The stack's Prometheus at work: it finds every ShopFlow process that runs, and it alerts when the saga's
workers are killed while orders flow, which ``shopflow lag`` shows as lag growing and STALL then STOP.
"""

from __future__ import annotations

import io
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from polling import eventually
from rich.console import Console

from shopflow.cli.lag import render
from shopflow.lag import LagMonitor
from shopflow.lag.evaluate import Status
from shopflow.launch import ShopflowProcess, edge_health
from shopflow.settings import Settings
from shopflow.streams.client import SagaClient
from shopflow.tables import APP_ID
from shopflow.topologies.catalog import ORDER_COMMANDS

pytestmark = pytest.mark.integration

JOBS = ("edge", "worker", "indexer", "projection", "monitor")


def _targets(settings: Settings) -> list[dict]:
    answer = httpx.get(f"{settings.prometheus_url}/api/v1/targets", params={"state": "active"}, timeout=10)
    return [t for t in answer.json()["data"]["activeTargets"] if t["labels"]["job"] != "prometheus"]


def _firing(settings: Settings, alertname: str) -> list[dict]:
    alerts = httpx.get(f"{settings.prometheus_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


@pytest.fixture
def processes(stack: Settings, tmp_path: Path):
    """``processes(name, args, health=None)``: a running ShopFlow process, stopped at the end."""
    started: list[ShopflowProcess] = []

    def start(name: str, args: list[str], **kw) -> ShopflowProcess:
        proc = ShopflowProcess(name, args, tmp_path / f"{name}.log", **kw)
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.close()


def test_prometheus_scrapes_every_shopflow_process_that_runs(stack, saga_workers, processes):
    port = _free_port()
    processes("edge", ["api", "--port", str(port)], health=edge_health(stack, port))
    for name in ("indexer", "projection", "monitor"):
        processes(name, [name])

    def every_job_up() -> list[dict]:
        targets = _targets(stack)
        assert {t["labels"]["job"] for t in targets if t["health"] == "up"} >= set(JOBS), targets
        assert [t for t in targets if t["health"] != "up"] == []  # every registered process answers
        return targets

    targets = eventually(every_job_up, timeout_s=120, what="Prometheus to scrape every ShopFlow process")
    print("\n".join(f"{t['labels']['job']:<10} {t['scrapeUrl']:<36} {t['health']}" for t in targets))
    workers = {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "worker"}
    assert {f"{stack.host}:{urlparse(url).port}" for url in saga_workers} <= workers


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shown(report, topic: str) -> str:
    """`shopflow lag`'s table, cut to one topic's partitions (a group's other topics are dozens of rows)."""
    groups = [replace(g, partitions=[p for p in g.partitions if p.topic == topic]) for g in report.groups]
    out = io.StringIO()
    Console(file=out, width=150, color_system=None).print(render(replace(report, groups=groups)))
    return out.getvalue()


def test_killed_workers_show_as_lag_and_stop_and_fire_an_alert_then_recover(stack, codec, worker_factory,
                                                                            saga_workers, suite_timeouts):
    ports = [urlparse(url).port for url in saga_workers]
    lag = LagMonitor(stack.model_copy(update={"lag_window_s": 2.0, "lag_interval_s": 0.25}))
    client = SagaClient(stack, codec)
    run = uuid.uuid4().hex[:8]
    client.seed_stock({f"{run}-A": 10_000})
    flowing, placed = threading.Event(), []

    def place_orders() -> None:  # orders keep coming while the workers are down
        while not flowing.wait(0.2):
            client.place(f"{run}-{len(placed)}", [(f"{run}-A", 1, 1000)])
            placed.append(1)

    def commands_lag():
        report = lag.sample(APP_ID)
        [group] = report.groups
        commands = [p for p in group.partitions if p.topic == ORDER_COMMANDS.name]
        return report, group, commands

    shown: list[str] = []
    try:
        for port in ports:
            worker_factory.kill(port)
        feeder = threading.Thread(target=place_orders, daemon=True)
        feeder.start()

        # Then the lag grows in records and in seconds, and the group is STALL while the killed members
        # still hold their partitions (static membership), STOP once the broker has let them go
        def behind_and(status: Status):
            def check():
                report, group, commands = commands_lag()
                assert group.status is status, (group.status, group.state)
                assert sum(p.lag or 0 for p in commands) > 0 and (group.lag_s or 0) > 0
                shown.append(_shown(report, ORDER_COMMANDS.name))
                return group
            return check

        stalled = eventually(behind_and(Status.STALL), timeout_s=30, interval_s=0.5, what="the group STALL")
        stopped = eventually(behind_and(Status.STOP), timeout_s=60, interval_s=0.5, what="the group STOP")
        assert stopped.lag > stalled.lag and (stopped.lag_s or 0) > (stalled.lag_s or 0)

        # And Prometheus fires the alert for a registered worker that no longer answers
        down = eventually(lambda: _firing(stack, "ShopflowProcessDown"), timeout_s=90, interval_s=1,
                          what="ShopflowProcessDown firing")
        assert {a["labels"]["job"] for a in down} >= {"worker"}
        print("\n".join(f"{a['labels']['alertname']} {a['labels']['instance']} {a['state']}: "
                        f"{a['annotations']['summary']}" for a in down))
    finally:
        flowing.set()
        for port in ports:  # as the session started them: later tests rely on the suite's step timeouts
            worker_factory.start(port, **suite_timeouts)
        worker_factory.wait_ready(ports)

    # When the workers are back, the group catches up: lag 0, OK
    def caught_up():
        report, group, commands = commands_lag()
        assert group.status is Status.OK and sum(p.lag or 0 for p in commands) == 0, group.status
        shown.append(_shown(report, ORDER_COMMANDS.name))
        return group

    eventually(caught_up, timeout_s=90, interval_s=0.5, what="the group caught up and OK")
    client.close()
    lag.close()
    print(f"\n--- shopflow lag {APP_ID} ({ORDER_COMMANDS.name}), workers killed: STALL, STOP; restarted: OK ---")
    print("\n".join([shown[0], shown[len(shown) // 2], shown[-1]]))
