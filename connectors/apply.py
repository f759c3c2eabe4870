"""Applies the connector declarations of ``connectors/*.json`` through Kafka Connect's REST API,
and reads and acts on the connectors running there (the ops console and ``shopflow connectors``).

``apply`` is an idempotent ``PUT /connectors/{name}/config`` followed by a wait until the
connector and every task are RUNNING; a task that FAILED is reported with its trace. A file
that is not a valid declaration is refused before anything is sent.

``statuses`` reads every connector's own state and each task's, fresh from Connect on every call
(never cached: a connector that failed a moment ago is never shown RUNNING), as ``ConnectorStatus``
records; ``pause``, ``resume`` and ``restart`` are Connect's own actions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

CONNECTORS_DIR = Path(__file__).resolve().parent
POLL_S = 0.5  # how often a connector's status is read while waiting for it to run


class ConnectorError(Exception):
    """A connector declaration or its deployment failed; the message says what to do."""


class _NotRunning(Exception):
    """Not RUNNING yet (connector or some task); ``status`` is the last one read (None: not there yet)."""

    def __init__(self, status: dict | None):
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Connector:
    name: str
    config: dict[str, str]
    path: Path | None = None


def load(path: Path) -> Connector:
    """Read and check one declaration: {"name": ..., "config": {"connector.class": ..., ...}}."""
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConnectorError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except OSError as exc:
        raise ConnectorError(f"{path}: cannot be read ({exc.strerror})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not isinstance(doc.get("config"), dict):
        raise ConnectorError(f'{path}: a connector file is {{"name": "...", "config": {{...}}}}')
    config = doc["config"]
    if "connector.class" not in config:
        raise ConnectorError(f"{path}: config has no connector.class")
    bad = [k for k, v in config.items() if not isinstance(v, str)]
    if bad:
        raise ConnectorError(f"{path}: Connect takes string values only; not strings: {', '.join(bad)}")
    if path.stem != doc["name"]:
        raise ConnectorError(f"{path}: the file is named after its connector; expected {doc['name']}.json")
    return Connector(doc["name"], config, path)


def headline(trace: str) -> str:
    """The line of a Java trace that says what went wrong: its root cause (the last "Caused by:")."""
    lines = [line.strip() for line in trace.strip().splitlines()]
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]
    return causes[-1] if causes else (lines[0] if lines else "(no trace)")


# Connect's states of a connector or a task (its REST API's ``state``). A state this list does not know
# (a newer Connect's) is shown as it comes, never refused: a page that crashes on RESTARTING hides the rest.
CONNECT_STATES = ("UNASSIGNED", "RUNNING", "PAUSED", "STOPPED", "RESTARTING", "FAILED")


@dataclass(frozen=True)
class TaskStatus:
    """A connector's own state (``task`` None) or one task's, with the worker it runs on and its trace."""

    state: str
    worker_id: str | None = None
    trace: str | None = None
    task: int | None = None

    @property
    def cause(self) -> str | None:
        """The root cause of a failure (the trace's headline), None when there is no trace."""
        return headline(self.trace) if self.trace else None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> TaskStatus:
        return cls(str(doc.get("state", "UNASSIGNED")), doc.get("worker_id"), doc.get("trace") or None, doc.get("id"))


@dataclass(frozen=True)
class ConnectorStatus:
    """One connector as Connect reports it now: its own state and its tasks' (they differ: a RUNNING
    connector may have FAILED tasks, and a FAILED connector may have no task at all)."""

    name: str
    connector: TaskStatus
    tasks: tuple[TaskStatus, ...] = field(default=())
    type: str | None = None

    @classmethod
    def of(cls, name: str, doc: dict[str, Any]) -> ConnectorStatus:
        tasks = tuple(sorted((TaskStatus.of(t) for t in doc.get("tasks", [])), key=lambda t: t.task or 0))
        return cls(name, TaskStatus.of(doc.get("connector", {})), tasks, doc.get("type"))

    @property
    def failed_tasks(self) -> int:
        return sum(t.state == "FAILED" for t in self.tasks)

    @property
    def states(self) -> frozenset[str]:
        """Every state the connector or one of its tasks is in (what a state filter matches)."""
        return frozenset([self.connector.state, *(t.state for t in self.tasks)])

    @property
    def health(self) -> str:
        """One word for the whole: FAILED when the connector or any task failed (never a RUNNING that
        hides a failed task), else the connector's state when not RUNNING, else the first task state
        that is not RUNNING, else RUNNING."""
        if "FAILED" in self.states:
            return "FAILED"
        if self.connector.state != "RUNNING":
            return self.connector.state
        return next((t.state for t in self.tasks if t.state != "RUNNING"), "RUNNING")

    @property
    def cause(self) -> str | None:
        """The failure that matters first: the connector's own (a task cannot run without it), else the
        first failed task's."""
        failed = [u for u in (self.connector, *self.tasks) if u.state == "FAILED" and u.trace]
        return failed[0].cause if failed else None


def declared() -> list[Connector]:
    return [load(p) for p in sorted(CONNECTORS_DIR.glob("*.json"))]


def _path(name: str) -> str:
    """A connector's REST path; the name quoted whole, so a "/" or "?" in it cannot reach another resource."""
    return f"/connectors/{quote(name, safe='')}"


class ConnectClient:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ConnectorError(f"Kafka Connect at {self.url} unreachable ({exc}); "
                                 "start it with `shopflow stack up`") from None

    def put(self, connector: Connector) -> bool:
        """Create or update; returns True when the connector was created."""
        r = self._call("PUT", f"{_path(connector.name)}/config", json=connector.config)
        if r.status_code >= 400:
            raise ConnectorError(f"{connector.name}: Connect refused the config ({r.status_code}): {_message(r)}")
        return r.status_code == 201

    def status(self, name: str) -> dict | None:
        r = self._call("GET", f"{_path(name)}/status")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def names(self) -> list[str]:
        return list(self._call("GET", "/connectors").json())

    def delete(self, name: str) -> bool:
        r = self._call("DELETE", _path(name))
        return r.status_code in (200, 204)

    def statuses(self) -> list[ConnectorStatus]:
        """Every connector's status, read now in one call (``?expand=status``), sorted by name."""
        r = self._call("GET", "/connectors", params={"expand": "status"})
        if r.status_code >= 400:
            raise ConnectorError(f"Kafka Connect at {self.url} answered {r.status_code} listing connectors: "
                                 f"{_message(r)}; see .shopflow/logs/connect.log")
        return [ConnectorStatus.of(name, entry.get("status", {})) for name, entry in sorted(r.json().items())]

    def connector_status(self, name: str) -> ConnectorStatus | None:
        """One connector's status read now, None when there is no connector of that name."""
        doc = self.status(name)
        return None if doc is None else ConnectorStatus.of(name, doc)

    def restart(self, name: str, *, only_failed: bool = False) -> ConnectorStatus | None:
        """Restart the connector and its tasks (``only_failed``: only the instances that FAILED, Connect's
        ``onlyFailed``). Returns the status Connect answers with (the instances it restarts show
        RESTARTING), or None when it answered without one."""
        params = {"includeTasks": "true", "onlyFailed": "true" if only_failed else "false"}
        r = self._call("POST", f"{_path(name)}/restart", params=params)
        self._check(name, "restart", r)
        return ConnectorStatus.of(name, r.json()) if r.status_code == 202 and r.content else None

    def pause(self, name: str) -> None:
        """Pause the connector and its tasks (they stay assigned, produce nothing) until ``resume``."""
        self._check(name, "pause", self._call("PUT", f"{_path(name)}/pause"))

    def resume(self, name: str) -> None:
        self._check(name, "resume", self._call("PUT", f"{_path(name)}/resume"))

    @staticmethod
    def _check(name: str, action: str, r: httpx.Response) -> None:
        if r.status_code == 404:
            raise ConnectorError(f"no connector named {name}; `shopflow connectors status` lists them")
        if r.status_code == 409:
            raise ConnectorError(f"{name}: {action} refused while Connect rebalances its workers (409); "
                                 "try again in a few seconds")
        if r.status_code >= 400:
            raise ConnectorError(f"{name}: {action} refused ({r.status_code}): {_message(r)}")

    def wait_running(self, name: str, timeout_s: float = 60.0) -> dict:
        """Wait until the connector and all its tasks are RUNNING; a FAILED one raises with its trace."""

        def running() -> dict:
            status = self.status(name)
            if status:
                failed = [t for t in [status["connector"], *status.get("tasks", [])] if t.get("state") == "FAILED"]
                if failed:
                    trace = failed[0].get("trace", "(no trace)")
                    raise ConnectorError(
                        f"{name} FAILED: {headline(trace)}\n{trace}\n"
                        f"fix the config in connectors/{name}.json and run `shopflow connectors apply` again"
                    )
                tasks = status.get("tasks", [])
                if status["connector"].get("state") == "RUNNING" and tasks and all(
                    t.get("state") == "RUNNING" for t in tasks
                ):
                    return status
            raise _NotRunning(status)

        try:
            return Retrying(retry=retry_if_exception_type(_NotRunning), stop=stop_after_delay(timeout_s),
                            wait=wait_fixed(POLL_S), reraise=True)(running)
        except _NotRunning as exc:
            raise ConnectorError(f"{name} not RUNNING after {timeout_s:.0f}s (last status: {exc.status}); "
                                 "see .shopflow/logs/connect.log") from None

    def apply(self, connector: Connector, timeout_s: float = 60.0) -> str:
        created = self.put(connector)
        self.wait_running(connector.name, timeout_s)
        return "created" if created else "updated"


def _message(r: httpx.Response) -> str:
    """Connect's error message (its JSON ``message``), else the body as text."""
    try:
        return str(r.json().get("message", r.text))
    except ValueError:
        return r.text
