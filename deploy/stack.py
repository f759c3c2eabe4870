"""Starts, stops and reports the stack: ``shopflow stack up | down | status``.

Servers start in dependency order, each waited for by its readiness probe. ``up`` is idempotent (a
server already up is left alone), all-or-nothing (when one server fails, the ones this call started
are stopped again and the error names the log to read), safe to run twice at once (``up`` and
``down`` hold the stack's lock, deploy/lock.py) and safe to interrupt: a server's pid file
(``.shopflow/run/<server>.json``) is written as soon as it is spawned, before its readiness wait, and
every server process works in its server's data folder (deploy/processes.py), so the next ``up``
adopts a ready server left without a pid file and stops a half-started one, and ``down`` stops both.

Up is an answer about processes; whether their data is healthy (a red index, a missing topic, a
failed connector) is ``health()``'s answer (deploy/health.py), with the command that repairs it.
"""

from __future__ import annotations

import atexit
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mirakuru.base
import psutil
from mirakuru import Executor, SimpleExecutor
from mirakuru.exceptions import ProcessExitedWithError, TimeoutExpired
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from shopflow.deploy import StackError
from shopflow.deploy.lock import StackLock
from shopflow.deploy.mail_server import MailServer
from shopflow.deploy.object_store import ObjectStore
from shopflow.deploy.processes import RunState, alive, mirakuru_uuid, port_holder, processes_in, root_of, stop, works_in
from shopflow.deploy.servers import Connect, Kafka, Registry, Search, Server, port_open
from shopflow.deploy.system_servers import Postgres, Prometheus, Redis
from shopflow.settings import Settings, ensure_local_secret

Progress = Callable[[str], None]


class _Probed(Executor):
    """A mirakuru executor that is started when the server's own probe says so, and that tells
    ``spawned`` its process before it waits, so an interrupted start leaves a pid file behind."""

    def __init__(self, server: Server, log, timeout: float, spawned: Callable[[_Probed], None]):
        super().__init__(
            server.command(), cwd=str(server.data_dir), timeout=timeout, sleep=0.5,
            envvars=server.env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        self.server = server
        self.spawned = spawned

    def start(self) -> _Probed:
        SimpleExecutor.start(self)
        self.spawned(self)
        self.wait_for(self.check_subprocess)
        return self

    def after_start_check(self) -> bool:
        return self.server.ready()


@dataclass
class ServerStatus:
    name: str
    version: str
    port: int
    pid: int | None
    up: bool
    rss_mb: float
    # up, starting (its process runs, not ready yet), down; "no pid file" or the port's holder in note.
    state: str = "down"
    note: str = ""


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
        Prometheus("prometheus", settings, needs_java=False),  # scrapes the ShopFlow processes, not the servers
        ObjectStore("object_store", settings, needs_java=False),  # product images (S3 API)
        MailServer("mail", settings, needs_java=False),  # notifications by email (SMTP, HTTP API to read them)
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
        """The pid file's process, if it still runs and is still this server (not a reused pid)."""
        state = RunState.load(self._state_path(server))
        proc = alive(state.pid) if state else None
        if state is None or proc is None:
            return None
        # It or a child works in the server's folder (PostgreSQL's pid is runuser's, which works in /).
        answers = [works_in(p, server.data_dir) for p in [proc, *_children(proc)]]
        if True in answers:
            return proc
        if None not in answers:
            return None  # a reused pid: another process now
        # Its folder cannot be read (another user's): a reused pid is younger than the pid file.
        return proc if proc.create_time() <= state.started_at + 1 else None

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
                self.progress(f"fetch  {server.name:<10} {server.version} ...")
            server.fetch()

    # -- up ------------------------------------------------------------------------------
    def _lock(self) -> StackLock:
        # A concurrent `up` may need every server's start timeout before it lets go.
        return StackLock(self.settings.run_dir, self.progress,
                         timeout_s=self.settings.start_timeout_s * (len(self.servers) + 1))

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
        with self._lock():
            try:
                for server in self.servers:
                    if self._serving(server):
                        self.progress(f"up     {server.name:<10} already running")
                        continue
                    if self._adopt(server):
                        continue
                    self._stop(server)  # what remains of an earlier start: a dead pid, a half-started process
                    self._refuse_taken_port(server)
                    t0 = time.monotonic()
                    self.progress(f"start  {server.name:<10} port {server.port} ...")
                    started.append(server)
                    self._start(server)
                    server.after_ready()
                    self.progress(f"up     {server.name:<10} ready in {time.monotonic() - t0:.1f}s")
            except BaseException:
                for server in reversed(started):
                    self._stop(server)
                raise
        return [s.name for s in started]

    def _serving(self, server: Server) -> bool:
        """Its pid-file process runs, answers, and is what listens on its port."""
        proc = self._live_process(server)
        return proc is not None and server.ready() and self._holds_port(server, proc)

    def _holds_port(self, server: Server, proc: psutil.Process) -> bool:
        """The port's listener is ``proc`` (or a child of it), or another process working in its folder."""
        holder = port_holder(server.port)
        if holder is None:  # nobody listens, or the listener is another user's: ready() decided
            return True
        return holder.pid in {proc.pid, *(c.pid for c in _children(proc))} or Path(holder.cwd).is_relative_to(
            server.data_dir.resolve())

    def _adopt(self, server: Server) -> bool:
        """A process of this server that runs without answering yet (a start an interrupted `up` left,
        a server busy for a moment) is given its start timeout before anything is stopped; a ready one
        left without its pid file gets one again."""
        proc = self._live_process(server)
        orphan = proc is None
        proc = proc or root_of(processes_in(server.data_dir))
        if proc is None:
            return False

        def answers() -> bool | None:
            if not proc.is_running():
                return None  # gone: nothing to wait for
            return server.ready() and self._holds_port(server, proc)

        answered = answers()
        if answered is False:
            self.progress(f"wait   {server.name:<10} pid {proc.pid} runs{' without a pid file' if orphan else ''} "
                          f"but does not answer yet: waiting up to {self.settings.start_timeout_s:.0f}s ...")
            try:
                answered = Retrying(retry=retry_if_result(lambda ok: ok is False), wait=wait_fixed(0.5),
                                    stop=stop_after_delay(self.settings.start_timeout_s))(answers)
            except RetryError:
                answered = False
        if not answered:
            return False
        if orphan:
            RunState(proc.pid, mirakuru_uuid(proc), server.port, server.version, proc.create_time()).save(
                self._state_path(server))
        server.after_ready()
        self.progress(f"up     {server.name:<10} adopted (pid {proc.pid}"
                      f"{', given its pid file again' if orphan else ''})")
        return True

    def _refuse_taken_port(self, server: Server) -> None:
        if not port_open(self.settings.host, server.port):
            return
        holder = port_holder(server.port)
        raise StackError(
            f"port {server.port} for {server.name} is already in use"
            f"{' by ' + holder.describe() if holder else ''}: stop that process, or set "
            f"SHOPFLOW_{server.name.upper()}_PORT to a free port, then run `shopflow stack up` again"
        )

    def _start(self, server: Server) -> None:
        server.data_dir.mkdir(parents=True, exist_ok=True)
        server.prepare()
        log_path = self._log_path(server)

        def record(executor: _Probed) -> None:
            assert executor.process is not None
            RunState(executor.process.pid, executor._uuid, server.port, server.version, time.time()).save(
                self._state_path(server))

        with open(log_path, "a") as log:
            log.write(f"\n===== shopflow stack up {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
            log.flush()
            executor = _Probed(server, log, timeout=self.settings.start_timeout_s, spawned=record)
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
            # Hand the process over to the pid file: the executor must not kill it when collected.
            executor.process = None

    # -- down ----------------------------------------------------------------------------
    def down(self) -> list[str]:
        stopped = []
        with self._lock():
            for server in reversed(self.servers):
                if self._state_path(server).exists() or processes_in(server.data_dir):
                    self._stop(server)
                    stopped.append(server.name)
                    self.progress(f"down   {server.name}")
        return stopped

    def _stop(self, server: Server, grace_s: float = 30.0) -> None:
        """Stop the server's pid-file process, mirakuru's children of it and any process working in its folder."""
        state = RunState.load(self._state_path(server))
        procs = {p.pid: p for p in processes_in(server.data_dir)}
        if state is not None:
            pids = {state.pid} | mirakuru.base.processes_with_env(mirakuru.base.ENV_UUID, state.mirakuru_uuid)
            for pid in pids - procs.keys():
                proc = alive(pid)
                if proc is not None:
                    procs[pid] = proc
        if procs:
            stop(list(procs.values()), group_of=state.pid if state else None, grace_s=grace_s)
        self._state_path(server).unlink(missing_ok=True)

    # -- status --------------------------------------------------------------------------
    def status(self) -> list[ServerStatus]:
        return [self._status_of(server) for server in self.servers]

    def _status_of(self, server: Server) -> ServerStatus:
        proc = self._live_process(server)
        note = ""
        if proc is None:
            proc = root_of(processes_in(server.data_dir))
            note = "no pid file: `shopflow stack up` adopts it" if proc else ""
        rss = 0.0
        if proc is not None:
            try:
                # Proportional set size: PostgreSQL's backends share their buffers, and plain
                # RSS would count those pages once per process.
                for p in [proc, *proc.children(recursive=True)]:
                    rss += p.memory_full_info().pss
            except psutil.Error:
                pass
        up = proc is not None and server.ready() and self._holds_port(server, proc)
        state = "up" if up else ("starting" if proc is not None else "down")
        holder = None if up else port_holder(server.port)
        if holder is not None and (proc is None or not self._holds_port(server, proc)):
            note = f"port {server.port} held by {holder.describe()}"
        return ServerStatus(server.name, server.version, server.port, proc.pid if proc else None, up,
                            round(rss / 2**20, 1), state, note)


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "    (no log)"
