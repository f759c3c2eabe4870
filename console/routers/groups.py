"""Consumer groups (``/groups``): per group and partition the lag in offsets and seconds, the Burrow-style
status, members and assignments, and a sparkline of the last hour.

Everything comes from the one lag engine (``shopflow.lag``): the table from a live sample taken
now, the statuses as the monitor judged them over its window (``shopflow_consumer_partition_status``
in Prometheus; the console's own window when the monitor has not sampled a partition), the last
hour from the recording rules (``shopflow:consumer_group_lag_seconds:max``,
``shopflow:consumer_group_lag:sum``). A partition behind links to the tap at its committed offset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from shopflow.console.auth import OpsViewer
from shopflow.console.pages import page
from shopflow.console.prometheus import Prometheus, PrometheusUnavailable, Series
from shopflow.console.resources import ConsoleDep
from shopflow.lag import GroupLag, LagError, LagReport, PartitionLag, Status
from shopflow.lag.evaluate import worst

router = APIRouter()

HISTORY_S = 3600
HISTORY_STEP_S = 60
PartitionKey = tuple[str, str, int]


class MemberRow(BaseModel):
    member_id: str
    client_id: str
    host: str
    assignment: list[str]  # topic[partition], sorted


class PartitionRow(BaseModel):
    topic: str
    partition: int
    committed: int | None  # None: no commit yet
    end: int | None
    lag: int | None
    lag_s: float | None
    estimated: bool  # lag_s is an estimate
    status: Status
    judged_by: str  # "monitor" (its window, via Prometheus) or "console" (this process's samples)
    member: str | None  # client_id@host holding it
    error: str | None
    tap_url: str | None  # where to read what it has yet to process


class GroupRow(BaseModel):
    group: str
    state: str
    status: Status
    lag: int
    lag_s: float | None
    members: list[MemberRow]
    partitions: list[PartitionRow]
    error: str | None
    # The last hour, a point a minute (None: no value then): max lag in seconds, total lag in records.
    lag_s_history: list[float | None]
    lag_history: list[float | None]


class GroupsView(BaseModel):
    at: float
    window_s: float
    groups: list[GroupRow]
    lag_error: str | None = None  # the broker could not be sampled
    prometheus_error: str | None = None  # no windowed statuses, no history


def tap_url(p: PartitionLag) -> str | None:
    if not p.lag or p.committed is None:
        return None
    return f"/tap/{quote(p.topic, safe='')}?" + urlencode({"partition": p.partition, "offset": p.committed})


async def monitor_statuses(prometheus: Prometheus) -> dict[PartitionKey, Status]:
    samples = await prometheus.query("shopflow_consumer_partition_status == 1")
    found = {}
    for s in samples:
        try:
            found[(s.labels["group"], s.labels["topic"], int(s.labels["partition"]))] = Status(s.labels["status"])
        except (KeyError, ValueError):
            continue
    return found


def _history(series: list[Series], group: str, end: float) -> list[float | None]:
    points = next((s.points for s in series if s.labels.get("group") == group), [])
    by_minute = {round((end - t) / HISTORY_STEP_S): v for t, v in points}
    return [by_minute.get(n) for n in range(HISTORY_S // HISTORY_STEP_S, -1, -1)]


def _partition(group: str, p: PartitionLag, judged: dict[PartitionKey, Status]) -> PartitionRow:
    status = judged.get((group, p.topic, p.partition))
    return PartitionRow(
        topic=p.topic, partition=p.partition, committed=p.committed, end=p.end, lag=p.lag, lag_s=p.lag_s,
        estimated=p.estimated, status=status or p.status, judged_by="monitor" if status else "console",
        member=f"{p.member.client_id}@{p.member.host}" if p.member else None, error=p.error, tap_url=tap_url(p))


def _group(g: GroupLag, judged: dict[PartitionKey, Status], history: tuple[list[Series], list[Series]],
           end: float) -> GroupRow:
    partitions = [_partition(g.group, p, judged) for p in g.partitions]
    assignments: dict[str, list[str]] = {m.member_id: [] for m in g.members}
    for p in g.partitions:
        if p.member is not None and p.member.member_id in assignments:
            assignments[p.member.member_id].append(f"{p.topic}[{p.partition}]")
    members = [MemberRow(member_id=m.member_id, client_id=m.client_id, host=m.host,
                         assignment=sorted(assignments[m.member_id])) for m in g.members]
    status = Status.ERR if g.error else worst(p.status for p in partitions)
    return GroupRow(group=g.group, state=g.state, status=status, lag=g.lag, lag_s=g.lag_s, members=members,
                    partitions=partitions, error=g.error, lag_s_history=_history(history[0], g.group, end),
                    lag_history=_history(history[1], g.group, end))


async def groups_view(sample: Awaitable[LagReport], prometheus: Prometheus, window_s: float,
                      only: str | None = None) -> GroupsView:
    """The page's data: ``sample`` is the live lag sample, already under way while Prometheus is asked."""
    end = time.time()
    judged: dict[PartitionKey, Status] = {}
    history: tuple[list[Series], list[Series]] = ([], [])
    prometheus_error = None
    try:
        judged, lag_s_series, lag_series = await asyncio.gather(
            monitor_statuses(prometheus),
            prometheus.query_range("shopflow:consumer_group_lag_seconds:max", end - HISTORY_S, end, HISTORY_STEP_S),
            prometheus.query_range("shopflow:consumer_group_lag:sum", end - HISTORY_S, end, HISTORY_STEP_S))
        history = (lag_s_series, lag_series)
    except PrometheusUnavailable as exc:
        prometheus_error = str(exc)
    try:
        report = await sample
    except LagError as exc:
        return GroupsView(at=end, window_s=window_s, groups=[], lag_error=str(exc), prometheus_error=prometheus_error)
    rows = [_group(g, judged, history, end) for g in report.groups if only is None or g.group == only]
    rows.sort(key=lambda r: (-list(Status).index(r.status), r.group))
    return GroupsView(at=report.at, window_s=report.window_s, groups=rows, prometheus_error=prometheus_error)


@router.get("/groups", include_in_schema=False)
async def groups_page(request: Request, console: ConsoleDep, _: OpsViewer, group: str | None = None) -> Response:
    sample = asyncio.ensure_future(console.lag.sample())  # the broker is read while Prometheus answers
    view = await groups_view(sample, console.prometheus, console.settings.lag_window_s, group)
    return page(request, "groups.html", view, selected=group)
