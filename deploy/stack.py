"""Starts, stops and reports the stack: ``shopflow stack up | down | status``.

Servers start in dependency order, each waited for by its readiness probe; their pids live in
``.shopflow/run/<server>.json`` so ``down`` and ``status`` work from any later command. ``up`` is
idempotent (a server already up is left alone) and all-or-nothing: when one server fails, the
ones this call started are stopped again and the error names the log to read.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import mirakuru.base
import psutil
from mirakuru import Executor
from mirakuru.exceptions import ProcessExitedWithError, TimeoutExpired

from shopflow.deploy import StackError
from shopflow.deploy.servers import Connect, Kafka, Registry, Search, Server, port_open
from shopflow.deploy.system_servers import Postgres, Redis
from shopflow.settings import Settings, ensure_local_secret

Progress = Callable[[str], None]


class _Probed(Executor):
    """A mirakuru executor that is started when the server's own probe says so."""

    def __init__(self, server: Server, log, timeout: float):
        super().__init__(
            server.command(), cwd=str(server.data_dir), timeout=timeout, sleep=0.5,
            envvars=server.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        self.server = server

    def pre_start_check(self) -> bool:
        return False  # the stack checks ports itself, with a clearer message

    def after_start_check(self) -> bool:
        return self.server.ready()


@dataclass
class RunState:
    """What ``up`` leaves behind for a server: enough to find and stop it later."""

    pid: int
    mirakuru_uuid: str
    port: int
    version: str
    started_at: float

    @classmethod
    def load(cls, path: Path) -> RunState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


@dataclass
class ServerStatus:
    name: str
    version: str
    port: int
    pid: int | None
    up: bool
    rss_mb: float


def ensure_secrets(settings: Settings) -> Settings:
    """Settings with the stack's local PostgreSQL password: the configured one, or one generated once."""
    if settings.postgres_password is not None:
        return settings
    password = ensure_local_secret(settings.home, "SHOPFLOW_POSTGRES_PASSWORD", 24)
    return settings.model_copy(update={"postgres_password": password})


def all_servers(settings: Settings) -> list[Server]:
    """Every server, in the order they start (each after what it depends on)."""
    return [
        Postgres("postgres", settings, needs_java=False),
        Redis("redis", settings, needs_java=False),
        Kafka("kafka", settings),
        Registry("registry", settings),  # stores schemas in PostgreSQL
        Connect("connect", settings),  # needs Kafka; captures PostgreSQL
        Search("search", settings),
    ]


class Stack:
    def __init__(self, settings: Settings, progress: Progress = print):
        self.settings = settings
        self.servers = all_servers(settings)
        self.progress = progress

    # -- files ---------------------------------------------------------------------------
    def _state_path(self, server: Server) -> Path:
        return self.settings.run_dir / f"{server.name}.json"

    def _log_path(self, server: Server) -> Path:
        return self.settings.log_dir / f"{server.name}.log"

    def _live_process(self, server: Server) -> psutil.Process | None:
        state = RunState.load(self._state_path(server))
        if state is None:
            return None
        try:
            proc = psutil.Process(state.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    # -- fetch ---------------------------------------------------------------------------
    def check_java(self) -> None:
        try:
            out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
        except FileNotFoundError:
            raise StackError("Java is not installed: run `make setup` (apt-get install openjdk-17-jre-headless) "
                             "and retry") from None
        major = out.split('"')[1].split(".")[0] if '"' in out else "0"
        if not major.isdigit() or int(major) < 17:
            raise StackError(f"Java 17 or newer is needed, found {out.splitlines()[0]!r}: install openjdk-17 "
                             "and put it first on PATH")

    def fetch(self) -> None:
        self.check_java()
        for server in self.servers:
            # Said only when there is something to download: a cached fetch is silent (`make demo` runs it each time).
            if not server.fetched():
                self.progress(f"fetch  {server.name:<9} {server.version} ...")
            server.fetch()

    # -- up ------------------------------------------------------------------------------
    def up(self) -> list[str]:
        """Start every server that is not up; returns the names of those started now."""
        # The stack outlives this command by design: mirakuru would kill its children at exit.
        atexit.unregister(mirakuru.base.cleanup_subprocesses)
        self.settings = ensure_secrets(self.settings)
        for server in self.servers:
            server.settings = self.settings
        self.fetch()
        for d in (self.settings.log_dir, self.settings.run_dir, self.settings.data_dir):
            d.mkdir(parents=True, exist_ok=True)
        started: list[Server] = []
        try:
            for server in self.servers:
                if self._live_process(server) and server.ready():
                    self.progress(f"up     {server.name:<9} already running")
                    continue
                self._refuse_taken_port(server)
                t0 = time.monotonic()
                self.progress(f"start  {server.name:<9} port {server.port} ...")
                self._start(server)
                started.append(server)
                server.after_ready()
                self.progress(f"up     {server.name:<9} ready in {time.monotonic() - t0:.1f}s")
        except BaseException:
            for server in reversed(started):
                self._stop(server)
            raise
        return [s.name for s in started]

    def _refuse_taken_port(self, server: Server) -> None:
        self._clear_stale(server)
        if not port_open(self.settings.host, server.port):
            return
        owner = _port_owner(server.port)
        raise StackError(
            f"port {server.port} for {server.name} is already in use{owner}: stop that process, or set "
            f"SHOPFLOW_{server.name.upper()}_PORT to a free port, then run `shopflow stack up` again"
        )

    def _clear_stale(self, server: Server) -> None:
        """A server whose process is gone or not ready: stop what remains of it."""
        if self._state_path(server).exists():
            self._stop(server)

    def _start(self, server: Server) -> None:
        server.data_dir.mkdir(parents=True, exist_ok=True)
        server.prepare()
        log_path = self._log_path(server)
        with open(log_path, "a") as log:
            log.write(f"\n===== shopflow stack up {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
            log.flush()
            executor = _Probed(server, log, timeout=self.settings.start_timeout_s)
            try:
                executor.start()
            except (ProcessExitedWithError, TimeoutExpired) as exc:
                what = "exited during start" if isinstance(exc, ProcessExitedWithError) else (
                    f"was not ready within {self.settings.start_timeout_s:.0f}s")
                executor.kill()
                raise StackError(
                    f"{server.name} {what}; see {log_path} (last lines below), fix the cause and run "
                    f"`shopflow stack up` again\n{_tail(log_path)}"
                ) from None
            except FileNotFoundError as exc:
                raise StackError(f"{server.name} could not be started ({exc}); run `make setup` and retry") from None
            process = executor.process
            assert process is not None  # start() returned: the process runs
            state = RunState(process.pid, executor._uuid, server.port, server.version, time.time())
            self._state_path(server).write_text(json.dumps(asdict(state)))
            # Hand the process over to the pid file: the executor must not kill it when collected.
            executor.process = None

    # -- down ----------------------------------------------------------------------------
    def down(self) -> list[str]:
        stopped = []
        for server in reversed(self.servers):
            if self._state_path(server).exists():
                self._stop(server)
                stopped.append(server.name)
                self.progress(f"down   {server.name}")
        return stopped

    def _stop(self, server: Server, grace_s: float = 30.0) -> None:
        state = RunState.load(self._state_path(server))
        if state is not None:
            pids = {state.pid} | mirakuru.base.processes_with_env(mirakuru.base.ENV_UUID, state.mirakuru_uuid)
            procs = []
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    procs.append(psutil.Process(pid))
            with contextlib.suppress(OSError):
                os.killpg(state.pid, signal.SIGTERM)
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
            _, alive = psutil.wait_procs(procs, timeout=grace_s)
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(alive, timeout=5)
        self._state_path(server).unlink(missing_ok=True)

    # -- status --------------------------------------------------------------------------
    def status(self) -> list[ServerStatus]:
        rows = []
        for server in self.servers:
            proc = self._live_process(server)
            rss = 0.0
            if proc is not None:
                try:
                    # Proportional set size: PostgreSQL's backends share their buffers, and plain
                    # RSS would count those pages once per process.
                    for p in [proc, *proc.children(recursive=True)]:
                        rss += p.memory_full_info().pss
                except psutil.Error:
                    pass
            up = proc is not None and server.ready()
            rows.append(ServerStatus(server.name, server.version, server.port, proc.pid if proc else None,
                                     up, round(rss / 2**20, 1)))
        return rows


def _port_owner(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f" by pid {conn.pid} ({' '.join(proc.cmdline())[:80]})"
    except psutil.Error:
        pass
    return ""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "    (no log)"
