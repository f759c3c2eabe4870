"""The saga health page's data: what the monitor measured, read where it publishes it; nothing recomputed.

- Orders by state, compensations by reason, placed -> terminal latency: the monitor's metrics
  (``streams.saga_health``) in Prometheus, the p99 through the recording rule of deploy/prometheus/rules.yml;
  the other percentiles are Prometheus's ``histogram_quantile`` over the same histogram.
- Stuck orders with their paths: the list the monitor writes to Redis each sweep (``streams.stuck_orders``).

Either source being away is said on the page with what to do; the other's numbers are still shown.
"""

from __future__ import annotations

import asyncio
import math
import time

from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shopflow.console.prometheus import Prometheus, PrometheusUnavailable
from shopflow.streams.saga_health import COMPENSATION_REASONS, RANK
from shopflow.streams.stuck_orders import BOARD_TTL_S, StuckBoard, read_board

QUANTILES = (0.5, 0.9, 0.99)
WINDOWS = ("5m", "1h")
ALL_OUTCOMES = "all"
P99_RULE = "shopflow:order_completion_seconds:p99_5m"  # deploy/prometheus/rules.yml
HISTOGRAM = "shopflow_order_completion_seconds_bucket"
NO_BOARD = (f"No list of stuck orders: no monitor has published one in the last {BOARD_TTL_S} s (it publishes "
            "once it has read the saga's history); is `shopflow monitor` running? Its log says why it stopped")


class Latency(BaseModel):
    """Placed -> terminal seconds for one outcome over one window; None: no order ended in it."""

    outcome: str
    window: str
    p50: float | None
    p90: float | None
    p99: float | None


class Compensation(BaseModel):
    reason: str
    last_hour: float | None
    since_monitor_start: float | None


class SagaHealthView(BaseModel):
    orders_by_state: dict[str, int]  # empty when Prometheus has none
    orders_completed_per_min: float | None
    compensations: list[Compensation]
    latency: list[Latency]
    stuck: StuckBoard | None
    notes: list[str]  # what could not be read, and what to do


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _quantile_expr(q: float, window: str, by_outcome: bool) -> str:
    if q == 0.99 and window == "5m" and by_outcome:
        return P99_RULE
    by = "le, outcome" if by_outcome else "le"
    return f"histogram_quantile({q}, sum by ({by}) (rate({HISTOGRAM}[{window}])))"


async def _latency(prometheus: Prometheus) -> list[Latency]:
    keys = [(q, w, by) for w in WINDOWS for by in (False, True) for q in QUANTILES]
    answers = await asyncio.gather(*(prometheus.query(_quantile_expr(q, w, by)) for q, w, by in keys))
    table: dict[tuple[str, str], dict[float, float | None]] = {}
    for (q, window, by_outcome), samples in zip(keys, answers, strict=True):
        for sample in samples:
            outcome = sample.labels.get("outcome", "?") if by_outcome else ALL_OUTCOMES
            table.setdefault((outcome, window), {})[q] = _finite(sample.value)
    def shown_first(item: tuple[tuple[str, str], object]) -> tuple[bool, bool, str]:
        (outcome, window), _ = item
        return window != WINDOWS[0], outcome != ALL_OUTCOMES, outcome

    return [Latency(outcome=outcome, window=window, p50=v.get(0.5), p90=v.get(0.9), p99=v.get(0.99))
            for (outcome, window), v in sorted(table.items(), key=shown_first)]


async def _from_prometheus(prometheus: Prometheus) -> tuple[dict[str, int], float | None, list[Compensation],
                                                             list[Latency]]:
    states, rate, last_hour, total, latency = await asyncio.gather(
        prometheus.query("max by (state) (shopflow_orders)"),
        prometheus.value("sum(shopflow:orders_completed:rate1m) * 60"),
        prometheus.query("sum by (reason) (increase(shopflow_compensations_total[1h]))"),
        prometheus.query("max by (reason) (shopflow_compensations_total)"),
        _latency(prometheus))
    by_state = {s.labels.get("state", "?"): int(s.value) for s in states if math.isfinite(s.value)}
    by_state = dict(sorted(by_state.items(), key=lambda kv: RANK.get(kv[0], len(RANK))))
    hour = {s.labels.get("reason"): _finite(s.value) for s in last_hour}
    ever = {s.labels.get("reason"): _finite(s.value) for s in total}
    reasons = sorted(set(COMPENSATION_REASONS) | {r for r in (*hour, *ever) if r})
    compensations = [Compensation(reason=r, last_hour=hour.get(r), since_monitor_start=ever.get(r)) for r in reasons]
    return by_state, rate, compensations, latency


async def saga_health(prometheus: Prometheus, redis: Redis, board_key: str) -> SagaHealthView:
    """The page's data; ``board_key``: where this deployment's monitor publishes its stuck orders."""
    notes: list[str] = []
    by_state: dict[str, int] = {}
    rate: float | None = None
    compensations: list[Compensation] = []
    latency: list[Latency] = []
    try:
        by_state, rate, compensations, latency = await _from_prometheus(prometheus)
        if not by_state:
            notes.append("Prometheus has no shopflow_orders series: the monitor is not running or is still reading "
                         "the saga's history (`shopflow monitor`; the ShopflowMonitorDown alert says so too)")
    except PrometheusUnavailable as exc:
        notes.append(str(exc))
    board: StuckBoard | None = None
    try:
        board = await read_board(redis, board_key)
        if board is None:
            notes.append(NO_BOARD)
        elif time.time() * 1000 - board.published_at_ms > BOARD_TTL_S * 1000:
            notes.append("The stuck orders list is older than it should be: is the monitor's clock right?")
    except RedisError as exc:
        notes.append(f"Redis did not answer ({type(exc).__name__}): no list of stuck orders; `shopflow stack status`")
    return SagaHealthView(orders_by_state=by_state, orders_completed_per_min=_finite(rate),
                          compensations=compensations, latency=latency, stuck=board, notes=notes)
