"""The stack's server processes: pid files, how a process is known as a server of a stack, and stopping.

Every server process runs in its server's data folder (``<home>/data/<server>``: mirakuru starts it
there, PostgreSQL and Redis move into folders under it), so the folder a process works in says which
stack and server it belongs to, even without its pid file (a ``stack up`` killed between spawning a
server and writing the file, a file deleted by hand), and a port held by another checkout's server is
named as that, not as "another process". The working folder, because it survives what a process does
to itself: Redis and PostgreSQL rewrite their command lines and environment for ``ps``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

# mirakuru marks its children with this variable; a pid file keeps the value to find them again.
MIRAKURU_ENV = "MIRAKURU_UUID"


@dataclass
class RunState:
    """What ``up`` leaves behind for a server as soon as it is spawned: enough to find and stop it later."""

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

    def save(self, path: Path) -> None:
        # Written whole then renamed: a reader (another `status`) never sees half a file.
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)


def alive(pid: int) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.Error:
        return None


def processes_in(folder: Path) -> list[psutil.Process]:
    """Live processes working in ``folder`` or below it, oldest first."""
    folder = folder.resolve()
    found = []
    for proc in psutil.process_iter(["cwd", "create_time", "status", "ppid"]):
        cwd = proc.info["cwd"]  # None when the process is another user's and cannot be read
        if cwd and proc.info["status"] != psutil.STATUS_ZOMBIE and Path(cwd).is_relative_to(folder):
            found.append(proc)
    return sorted(found, key=lambda p: p.info["create_time"])


def works_in(proc: psutil.Process, folder: Path) -> bool | None:
    """Whether ``proc`` works in ``folder`` or below it; None when its folder cannot be read."""
    try:
        return Path(proc.cwd()).is_relative_to(folder.resolve())
    except psutil.AccessDenied:
        return None
    except psutil.Error:
        return False


def root_of(procs: list[psutil.Process]) -> psutil.Process | None:
    """The process the others descend from (the one ``up`` spawned), if there is one among them."""
    pids = {p.pid for p in procs}
    roots = [p for p in procs if p.info["ppid"] not in pids]
    return roots[0] if len(roots) == 1 else None


@dataclass(frozen=True)
class PortHolder:
    """The process listening on a port, and the folder it works in."""

    pid: int
    command: str
    cwd: str

    def describe(self) -> str:
        # <home>/data/<server>/...: a ShopFlow stack's server.
        parts = Path(self.cwd).parts
        if "data" in parts[:-1]:
            at = len(parts) - 1 - parts[::-1].index("data")
            if at + 1 < len(parts):
                return f"the {parts[at + 1]} server of the ShopFlow stack in {Path(*parts[:at])} (pid {self.pid})"
        return f"pid {self.pid} ({self.command[:80]})"


def port_holder(port: int) -> PortHolder | None:
    """Who listens on ``port``; None when nobody does or the listener cannot be seen (another user's)."""
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.Error:
        return None
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            try:
                proc = psutil.Process(conn.pid)
                return PortHolder(conn.pid, " ".join(proc.cmdline()), proc.cwd())
            except psutil.Error:
                return None
    return None


def mirakuru_uuid(proc: psutil.Process) -> str:
    try:
        return proc.environ().get(MIRAKURU_ENV, "")
    except psutil.Error:
        return ""


def stop(procs: list[psutil.Process], group_of: int | None = None, grace_s: float = 30.0) -> None:
    """SIGTERM to each process (and to ``group_of``'s process group), SIGKILL to what is left after ``grace_s``."""
    if group_of is not None:
        with contextlib.suppress(OSError):
            os.killpg(group_of, signal.SIGTERM)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, left = psutil.wait_procs(procs, timeout=grace_s)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=5)

