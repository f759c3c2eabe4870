"""Fixtures for the saga over the real broker: workers started as the operator starts them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def worker_factory(stack, tmp_path_factory):
    """``worker_factory(n, **settings)``: n `shopflow worker` processes sharing the partitions, ready."""
    procs: list[tuple[subprocess.Popen, Path]] = []

    def start(count: int = 1, **overrides) -> list[int]:
        env = {**os.environ, **{f"SHOPFLOW_{k.upper()}": str(v) for k, v in overrides.items()}}
        ports = []
        for _ in range(count):
            port = _free_port()
            log = tmp_path_factory.mktemp("worker") / f"worker-{port}.log"
            proc = subprocess.Popen([sys.executable, "-m", "shopflow.cli", "worker", "--web-port", str(port)],
                                    env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
            procs.append((proc, log))
            ports.append(port)
        deadline = time.monotonic() + 120
        for proc, log in procs[-count:]:
            while "Worker]: Ready" not in log.read_text(errors="replace"):
                assert proc.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"worker not ready in 120s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        return ports

    yield start
    for proc, _ in procs:
        proc.terminate()
    for proc, log in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# The step timeouts of the workers the saga's broker tests share; scenarios that advance the clock
# declare these in `given.timeouts`.
TEST_TIMEOUTS = {"payment_timeout_s": 3, "reservation_timeout_s": 10, "cart_idle_s": 12}


@pytest.fixture(scope="session")
def saga_workers(worker_factory) -> list[str]:
    """Two workers sharing the partitions, started once per session; their base URLs."""
    return [f"http://127.0.0.1:{port}" for port in worker_factory(2, **TEST_TIMEOUTS)]
