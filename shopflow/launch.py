"""Starts ``shopflow`` processes (workers, the edge, the projection) and knows when each is ready.

One launcher for the demo, the benchmarks and the test fixtures. Readiness is what the process's
own health route answers, polled by a mirakuru executor, never a line looked for in its log. The
edge is ready when ``/v1/health`` answers 200. A worker's web server starts before it joins its
consumer group, and its ``/health/`` answers 200 from then (nothing is rebalancing or restoring
yet), so a worker is ready when ``/health/`` answers 200 *and* lists the partitions it holds: it
has joined, and restored its tables. The process's output goes to a log file, whose tail a
failure shows.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from mirakuru import Executor, HTTPExecutor, SimpleExecutor
from mirakuru.exceptions import AlreadyRunning, ProcessExitedWithError, ProcessFinishedWithError, TimeoutExpired

from shopflow.settings import Settings

__all__ = ["AlreadyRunning", "HealthCheck", "LaunchError", "ShopflowProcess", "edge_health", "ops_health",
           "stop_on_signals", "worker_health"]


def stop_on_signals() -> threading.Event:
    """For a long-running process's own main: an event set by SIGINT or SIGTERM (how the launcher stops it),
    which its loops watch to finish what they hold and exit cleanly."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


class LaunchError(RuntimeError):
    """A process exited or was not ready in time; the message ends with its log's last lines."""


def _ok(response: httpx.Response) -> bool:
    return response.status_code == 200


@dataclass(frozen=True)
class HealthCheck:
    """A process's health route, and what an answer must be for the process to count as ready."""

    url: str
    ready: Callable[[httpx.Response], bool] = _ok
    # A worker's check asks the broker (up to 2 s): each request has room for that.
    request_timeout_s: float = 5.0


def _holds_partitions(response: httpx.Response) -> bool:
    return response.status_code == 200 and bool(response.json().get("partitions"))


def worker_health(settings: Settings, port: int | None = None) -> HealthCheck:
    return HealthCheck(f"http://{settings.host}:{port or settings.worker_port}/health/", _holds_partitions)


def edge_health(settings: Settings, port: int | None = None) -> HealthCheck:
    return HealthCheck(f"http://{settings.host}:{port or settings.api_port}/v1/health")


def ops_health(settings: Settings, port: int | None = None) -> HealthCheck:
    """The ops console (``shopflow ops``): ready once its lifespan opened PostgreSQL and Redis."""
    return HealthCheck(f"http://{settings.host}:{port or settings.ops_port}/health")


class _Health(HTTPExecutor):
    """An HTTPExecutor that asks its HealthCheck, and whose start is split in two: spawn now, wait later."""

    def __init__(self, command: list[str], health: HealthCheck, **options: Any):
        super().__init__(command, health.url, **options)
        self.health = health

    def after_start_check(self) -> bool:
        try:
            return self.health.ready(httpx.get(self.health.url, timeout=self.health.request_timeout_s))
        except (httpx.HTTPError, ValueError):  # not listening yet, or not answering JSON yet
            return False

    def spawn(self) -> None:
        if self.pre_start_check():  # the port already answers: some other process serves there
            raise AlreadyRunning(self)
        # Executor.start would also wait; its parent's start only starts the process.
        super(Executor, self).start()

    def wait_ready(self) -> None:
        self._set_timeout()  # the start timeout counts from this wait, not from the spawn
        self.wait_for(self.check_subprocess)


class ShopflowProcess:
    """One ``shopflow <args>`` process, its output appended to ``log_path``.

    With a ``health`` check it is ready when that check passes; without one, as soon as it runs.
    ``start`` is ``spawn`` then ``wait_ready``; a process killed or stopped can be started again.
    """

    def __init__(self, name: str, args: Sequence[str], log_path: Path, *, health: HealthCheck | None = None,
                 env: dict[str, str] | None = None, timeout_s: float = 120.0, python_args: Sequence[str] = ()):
        self.name, self.args, self.log_path, self.timeout_s = name, list(args), log_path, timeout_s
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[Any] = open(log_path, "a")  # noqa: SIM115 - open for the process's whole life, closed in close()
        command = [sys.executable, *python_args, "-m", "shopflow.cli", *args]
        options: dict[str, Any] = dict(timeout=timeout_s, sleep=0.5, envvars=env or {}, stdin=subprocess.DEVNULL,
                                       stdout=self._log, stderr=subprocess.STDOUT)
        self._executor: _Health | SimpleExecutor = (
            _Health(command, health, **options) if health else SimpleExecutor(command, **options))

    @property
    def pid(self) -> int | None:
        process = self._executor.process
        return process.pid if process is not None else None

    def running(self) -> bool:
        return self._executor.running()

    def spawn(self) -> None:
        """Start the process without waiting; AlreadyRunning when its health route's port is already taken."""
        self._log.write(f"\n--- {time.strftime('%H:%M:%S')} shopflow {' '.join(self.args)} ---\n")
        self._log.flush()
        if isinstance(self._executor, _Health):
            self._executor.spawn()
        else:
            self._executor.start()

    def wait_ready(self) -> None:
        """Until the health check passes; LaunchError (with the log's tail) if it exits or times out."""
        if not isinstance(self._executor, _Health):
            return
        try:
            self._executor.wait_ready()
        except ProcessExitedWithError as exc:
            raise LaunchError(f"the {self.name} exited ({exc.exit_code}) while starting; {self._tail()}") from None
        except TimeoutExpired:
            raise LaunchError(f"the {self.name} was not ready in {self.timeout_s:.0f}s "
                              f"({self._executor.health.url} never said so); {self._tail()}") from None

    def start(self) -> ShopflowProcess:
        self.spawn()
        self.wait_ready()
        return self

    def kill(self) -> None:
        """SIGKILL to the process group: no flush, no commit, no goodbye to a consumer group."""
        self._executor.kill()

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not ended within the timeout."""
        # How it ended does not matter here: what it wrote is in its log.
        with contextlib.suppress(ProcessFinishedWithError):
            self._executor.stop()

    def close(self) -> None:
        self.stop()
        self._log.close()

    def _tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"see {self.log_path}, which ends:\n" + "\n".join("    " + line for line in text)
