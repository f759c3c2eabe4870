"""The overview (``/``): every server of the stack, every ShopFlow process, the alerts firing and the
headline numbers, each read from the place that already knows it.

Servers: ``deploy.stack.Stack.status()`` (the same answer as ``shopflow stack status``), read at most
every few seconds (``console.servers``; the page says how old the reading is). Processes:
the Prometheus targets each ShopFlow process registered (``settings.targets_dir``), up or down as
Prometheus scraped them, resident memory as the process reports it (``process_resident_memory_bytes``)
or, without Prometheus, as psutil reads it. Alerts and headline numbers: Prometheus, from the
recording rules of deploy/prometheus/rules.yml. When Prometheus is down the page says so and shows
the servers and processes still.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from importlib.metadata import version

import psutil
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from shopflow.console.auth import OpsViewer
from shopflow.console.pages import page
from shopflow.console.prometheus import Prometheus, PrometheusUnavailable
from shopflow.console.resources import ConsoleDep
from shopflow.console.servers import ServerRow, ServerStatus
from shopflow.settings import Settings

router = APIRouter()

# What each headline number is: a query of the recording rules (or, for dead letters, of the monitor's gauge).
HEADLINES = {
    "orders_per_min": "sum(shopflow:orders_completed:rate1m) * 60",
    "p99_completion_s": "max(shopflow:order_completion_seconds:p99_5m)",
    "max_lag_s": "max(shopflow:consumer_group_lag_seconds:max)",
    "freshness_p99_s": "max(shopflow:freshness_seconds:p99_10m)",
    "dead_letters_1h": "sum(increase(shopflow_dead_letter_records[1h]))",
}


class ProcessRow(BaseModel):
    job: str  # what the process is: edge, worker, monitor, indexer, projection, ops...
    instance: str  # where Prometheus scrapes it
    pid: int | None
    up: bool | None  # None: Prometheus does not know (down, or has not scraped it yet)
    rss_mb: float | None
    version: str


class AlertRow(BaseModel):
    name: str
    state: str
    severity: str
    summary: str
    action: str
    active_since: str


class Headline(BaseModel):
    orders_per_min: float | None = None
    p99_completion_s: float | None = None
    max_lag_s: float | None = None
    freshness_p99_s: float | None = None
    dead_letters_1h: float | None = None


class Overview(BaseModel):
    at: float
    servers: list[ServerRow]
    servers_read_at: float  # when the servers were read (a reading is shared for a few seconds)
    processes: list[ProcessRow]
    alerts: list[AlertRow]
    headline: Headline
    prometheus_error: str | None = None  # why the alerts and numbers are missing


def registered_processes(settings: Settings) -> list[ProcessRow]:
    """The processes registered as Prometheus targets (``shopflow.metrics.register_target``'s files)."""
    rows = []
    for path in sorted(settings.targets_dir.glob("*.json")):
        try:
            labels = json.loads(path.read_text())[0]["labels"]
        except (OSError, ValueError, LookupError, TypeError):
            continue  # being replaced or swept right now
        pid_text = path.stem.rpartition("-")[2]
        pid = int(pid_text) if pid_text.isdigit() else None
        rss = None
        if pid is not None:
            with contextlib.suppress(psutil.Error):  # gone since it registered: Prometheus will say down
                rss = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
        rows.append(ProcessRow(job=labels.get("job", "?"), instance=labels.get("instance", "?"), pid=pid,
                               up=None, rss_mb=rss, version=version("shopflow")))
    return rows


async def _with_prometheus(prometheus: Prometheus, processes: list[ProcessRow]
                           ) -> tuple[list[AlertRow], Headline, list[ProcessRow]]:
    alerts = await prometheus.alerts()
    values = await asyncio.gather(*(prometheus.value(expr) for expr in HEADLINES.values()))
    headline = Headline(**dict(zip(HEADLINES, values, strict=True)))
    up = {s.labels.get("instance"): s.value == 1 for s in await prometheus.query('up{job!="prometheus"}')}
    rss = {s.labels.get("instance"): s.value for s in await prometheus.query("process_resident_memory_bytes")}
    for p in processes:
        p.up = up.get(p.instance)
        if p.instance in rss:
            p.rss_mb = round(rss[p.instance] / 2**20, 1)
    return ([AlertRow(name=a.name, state=a.state, severity=a.severity, summary=a.summary, action=a.action,
                      active_since=a.active_since) for a in alerts], headline, processes)


async def overview(settings: Settings, prometheus: Prometheus, servers: ServerStatus) -> Overview:
    # A new reading of the servers is most of the time (~0.1 s a server), so Prometheus is asked meanwhile.
    servers_read = asyncio.ensure_future(servers.read())
    processes = registered_processes(settings)
    try:
        alerts, headline, processes = await _with_prometheus(prometheus, processes)
        error = None
    except PrometheusUnavailable as exc:
        alerts, headline, error = [], Headline(), str(exc)
    reading = await servers_read
    return Overview(at=time.time(), servers=reading.rows, servers_read_at=reading.read_at, processes=processes,
                    alerts=alerts, headline=headline, prometheus_error=error)


@router.get("/", include_in_schema=False)
async def overview_page(request: Request, console: ConsoleDep, _: OpsViewer) -> Response:
    return page(request, "overview.html", await overview(console.settings, console.prometheus,
                                                             console.servers))
