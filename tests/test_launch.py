"""The launcher the demo, the benchmarks and the fixtures share: a process that cannot start says why."""

from __future__ import annotations

import socket

import pytest

from shopflow.launch import HealthCheck, LaunchError, ShopflowProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_process_that_exits_while_starting_fails_with_its_log_tail(tmp_path):
    proc = ShopflowProcess("worker", ["no-such-command"], tmp_path / "worker.log",
                           health=HealthCheck(f"http://127.0.0.1:{_free_port()}/health/"), timeout_s=30)

    with pytest.raises(LaunchError, match=r"the worker exited \(2\) while starting; see .*worker.log(.|\n)*No such"):
        proc.start()
    assert not proc.running()


def test_a_process_without_a_health_route_is_ready_once_it_runs(tmp_path):
    proc = ShopflowProcess("help", ["--help"], tmp_path / "help.log")

    proc.start()
    proc.close()

    log = (tmp_path / "help.log").read_text()
    assert "--- " in log and "shopflow --help ---" in log
