"""Applies the connector declarations of ``connectors/*.json`` through Kafka Connect's REST API.

``apply`` is an idempotent ``PUT /connectors/{name}/config`` followed by a wait until the
connector and every task are RUNNING; a task that FAILED is reported with its trace. A file
that is not a valid declaration is refused before anything is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def declared() -> list[Connector]:
    return [load(p) for p in sorted(CONNECTORS_DIR.glob("*.json"))]


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
        r = self._call("PUT", f"/connectors/{connector.name}/config", json=connector.config)
        if r.status_code >= 400:
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text
            raise ConnectorError(f"{connector.name}: Connect refused the config ({r.status_code}): {message}")
        return r.status_code == 201

    def status(self, name: str) -> dict | None:
        r = self._call("GET", f"/connectors/{name}/status")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def names(self) -> list[str]:
        return list(self._call("GET", "/connectors").json())

    def delete(self, name: str) -> bool:
        r = self._call("DELETE", f"/connectors/{name}")
        return r.status_code in (200, 204)

    def restart(self, name: str) -> None:
        r = self._call("POST", f"/connectors/{name}/restart", params={"includeTasks": "true"})
        if r.status_code >= 400:
            raise ConnectorError(f"{name}: restart refused ({r.status_code}): {r.text}")

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
