"""A small client of Prometheus's HTTP API for the console's pages: instant and range queries, alerts.

The console draws what Prometheus already holds (the recording rules of deploy/prometheus/rules.yml,
the monitor's metrics) instead of computing it again. Prometheus being down is an answer, not a crash:
every call raises ``PrometheusUnavailable`` with what to do, and pages show the rest of what they know.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import httpx

from shopflow.settings import Settings

TIMEOUT_S = 3.0


class PrometheusUnavailable(Exception):
    """Prometheus did not answer, or refused the query; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant query: its labels and its value now."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range query: its labels and its (seconds since the epoch, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    state: str  # firing or pending
    severity: str
    summary: str
    action: str
    active_since: str
    labels: dict[str, str]


def _number(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else math.nan


class Prometheus:
    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None):
        self.url = settings.prometheus_url
        self.client = client or httpx.AsyncClient(base_url=self.url, timeout=TIMEOUT_S)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = await self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} does not answer ({type(exc).__name__}); `shopflow stack status` "
                "says whether it runs, `shopflow stack up` starts it") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(f"Prometheus refused {path} ({response.status_code}): "
                                        f"{body.get('error') or response.text[:200]}")
        return body["data"]

    async def query(self, expr: str) -> list[Sample]:
        """An instant vector (a scalar comes back as one sample without labels)."""
        data = await self._get("/api/v1/query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [Sample({}, _number(data["result"][1]))]
        return [Sample(r["metric"], _number(r["value"][1])) for r in data["result"]]

    async def value(self, expr: str) -> float | None:
        """The single value of ``expr``, None when it has no series (nothing measured yet) or is NaN."""
        samples = await self.query(expr)
        if not samples or math.isnan(samples[0].value):
            return None
        return samples[0].value

    async def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        data = await self._get("/api/v1/query_range",
                               {"query": expr, "start": start, "end": end, "step": step_s})
        return [Series(r["metric"], [(float(t), _number(v)) for t, v in r["values"]]) for r in data["result"]]

    async def alerts(self) -> list[Alert]:
        """Alerts firing or pending, firing first."""
        data = await self._get("/api/v1/alerts")
        found = [Alert(a["labels"].get("alertname", "?"), a.get("state", "?"), a["labels"].get("severity", ""),
                       a.get("annotations", {}).get("summary", ""), a.get("annotations", {}).get("action", ""),
                       a.get("activeAt", ""), a["labels"]) for a in data["alerts"]]
        return sorted(found, key=lambda a: (a.state != "firing", a.severity != "critical", a.name))
