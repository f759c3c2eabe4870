"""Saga health as live metrics: the order saga's state, rebuilt from its topics one record at a time.

``SagaHealth`` takes the records the saga's topics carry (as ``TopicReader`` decodes them) and the
inventory table's changelog rows, and answers at each scrape (it is a prometheus_client collector):
orders by state, orders past their step deadline (and, for the ops console, the list of them, each with
its path: ``stuck_orders``), the oldest open order's age, the placed -> terminal latency, compensations by
reason and the auditor's rules (``streams.audit``, the one owner of every rule) run as the records arrive.
It does no I/O: ``streams.monitor`` feeds it.

What an order's state is comes from ``ORDER_SAGA``: the state a transition enters is the state of an
order whose record that transition emits (OrderPlaced: PENDING, PaymentRequested: RESERVED, ...); the
step deadline is that state's ``Timeout`` (overridden by settings as the workers do). Records of
different topics are read in no fixed order, so an order's state only moves forward in the saga's
declaration order (and CONFIRMED -> REFUNDED, its one way on from a terminal state).

Bounded memory: an order is in the working set while it is open, then for ``settle_ms`` after its
terminal record (its compensations' acknowledgements land in that time); then the rules that need the
whole story run once and it leaves, kept only as a count per terminal state. A record for an order
not in the working set (the tail of an order already gone, an order whose start expired from the
topics) opens a trail without a start, dropped ``settle_ms`` after its last record without judging it.
So the working set is about (orders per second) x (longest step timeout + settle): open orders plus
the last ``settle_ms`` of ended ones, whatever the history. The last ``remember_ended`` orders that left
are remembered with their terminal state (a bounded LRU), so a copy of a terminal record read after its
order left (re-emitted with the same event id) neither counts the order twice nor reopens it.

Violations count only for orders whose OrderPlaced was read live (``observe(..., live=True)``: written
after the monitor started) and stock rows written live: a history's trails may be half gone (the topics
keep records for different times) and judging them would report what did not happen. A history is
read for the states and the working set; ``shopflow audit`` judges it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter as CounterMetric
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shopflow.settings import Settings
from shopflow.streams.audit import CANCELLED as ORDER_CANCELLED_RECORD
from shopflow.streams.audit import PLACED, Finding, OrderTrail, Rule, negative_stock
from shopflow.streams.stuck_orders import PATH_LIMIT, PathStep, StuckOrder
from shopflow.tables.values import is_reservation_key
from shopflow.topologies.saga import ORDER_CANCELLED, ORDER_SAGA, PAYMENT_TIMEOUT, RESERVATION_TIMEOUT
from shopflow.topologies.saga_model import Message

RANK = {s.name: n for n, s in enumerate(ORDER_SAGA.states)}
TERMINAL = frozenset(ORDER_SAGA.terminal_states)
OPEN = tuple(s.name for s in ORDER_SAGA.states if not s.terminal)
# The reasons a cancellation undoes something (transitions that compensate an effect); an invalid
# order is cancelled with nothing to undo.
COMPENSATION_REASONS = tuple(sorted({
    str(e.value("reason")) for t in ORDER_SAGA.transitions if t.compensates
    for e in t.emits if e.message == ORDER_CANCELLED
}))
# The rules the live topics can be judged by; the ones that need a whole table (reserved vs open
# reservations, leaked units, the gateway's count) stay with ``shopflow audit``.
LIVE_RULES = (Rule.TERMINAL_REPEATED, Rule.CANCELLED_UNREFUNDED, Rule.DOUBLE_CHARGE, Rule.RESERVATION_NOT_CONSUMED,
              Rule.RESERVATION_NOT_RELEASED, Rule.CONSUMED_UNRESERVED, Rule.CAPTURE_UNSETTLED, Rule.REFUND_MISSING,
              Rule.NEGATIVE_STOCK)
# An open state's awaited answers: the evidence or refusal of an effect that moves an order out of it
# ("payment-results PaymentSucceeded"), what a stuck order's page says it is waiting for.
_ANSWERS = {m for e in ORDER_SAGA.effects for m in (e.evidence, e.refusal) if m is not None}
AWAITING = {state: sorted({f"{t.trigger.topic.name} {t.trigger.short}" for t in ORDER_SAGA.transitions
                           if t.source == state and isinstance(t.trigger, Message) and t.trigger in _ANSWERS})
            for state in OPEN}
# Placed -> terminal: milliseconds when the saga flows, up to the longest step timeout when it does not.
COMPLETION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


# Record short name -> (fields the emitting transition fixes, the state it enters), most fixed fields first;
# the order's own records only (a command per line, ReserveStock or CommitStock, follows them).
_ENTERS: dict[str, list[tuple[tuple[tuple[str, Any], ...], str]]] = {}
for _t in ORDER_SAGA.transitions:
    for _emit in _t.emits:
        if not _emit.per_line:
            _ENTERS.setdefault(_emit.message.record.__name__, []).append((_emit.values, _t.target))
for _candidates in _ENTERS.values():
    _candidates.sort(key=lambda c: -len(c[0]))


def entered_state(record: str, value: Mapping[str, Any]) -> str | None:
    """The state an order is in once the saga emitted this record; None for a record no transition emits.

    Several transitions emitting one record (OrderCancelled) are told apart by the fields they fix
    (reason, refunded): the transition fixing the most fields the record has wins."""
    for fixed, target in _ENTERS.get(record, ()):
        if all(value.get(k) == v for k, v in fixed):
            return target
    return None


def _only_way_in(state: str) -> str | None:
    """The terminal state an order must have been in to enter ``state`` (REFUNDED: CONFIRMED), if one."""
    sources = {t.source for t in ORDER_SAGA.transitions if t.target == state}
    return next(iter(sources)) if len(sources) == 1 and sources <= TERMINAL else None


def step_timeouts(settings: Settings) -> dict[str, float]:
    """Seconds an order may stay in each open state: the saga's Timeout armed there, as the workers apply it
    (``SHOPFLOW_PAYMENT_TIMEOUT_S``, ``SHOPFLOW_RESERVATION_TIMEOUT_S``)."""
    overrides = {PAYMENT_TIMEOUT.name: settings.payment_timeout_s,
                 RESERVATION_TIMEOUT.name: settings.reservation_timeout_s}
    seconds = {}
    for state in OPEN:
        armed = ORDER_SAGA.timeouts(state)
        if armed:
            seconds[state] = overrides.get(armed[0].name) or armed[0].seconds
    return seconds


@dataclass
class _Tracked:
    trail: OrderTrail
    state: str | None = None
    entered_at: int = 0  # event time (ms) it entered its state
    placed_at: int | None = None  # event time of its OrderPlaced, when that was read
    ended_at: int | None = None  # event time of its first terminal record
    last_at: int = 0  # event time of its latest record (for a trail without a start)
    live: bool = False  # its OrderPlaced was read live: its violations count
    counted: set[Finding] = field(default_factory=set)
    path: list[tuple[str, str, int]] = field(default_factory=list)  # (topic, record, occurred_at): the first ones
    path_cut: bool = False


class SagaHealth(Collector):
    """The saga's health from its records; thread-safe (fed by one thread, scraped by another)."""

    def __init__(self, timeouts_s: Mapping[str, float], *, settle_ms: int = 30_000, stuck_grace_ms: int = 15_000,
                 remember_ended: int = 100_000):
        self.timeouts_ms = {state: int(s * 1000) for state, s in timeouts_s.items()}
        self.settle_ms, self.stuck_grace_ms = settle_ms, stuck_grace_ms
        self.orders: dict[str, _Tracked] = {}
        self.ended: Counter[str] = Counter()  # terminal state -> orders (those gone from the working set too)
        # order id -> (terminal state, ended at) of the last orders that left, least recent first
        self.left: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self.remember_ended = remember_ended
        self.negative: set[str] = set()  # skus below zero now
        self._lock = threading.Lock()
        self.compensations = CounterMetric("shopflow_compensations", "Orders cancelled with something to undo "
                                           "(reservations released, charge refunded), by reason.",
                                           ["reason"], registry=None)
        self.violations = CounterMetric("shopflow_invariant_violations", "Saga invariant violations found on the "
                                        "live topics (streams/audit.py's rules), by rule.", ["rule"], registry=None)
        self.completion = Histogram("shopflow_order_completion_seconds", "Placed -> terminal time of an order "
                                    "(event times of OrderPlaced and its first terminal record), by outcome.",
                                    ["outcome"], buckets=COMPLETION_BUCKETS, registry=None)
        for reason in COMPENSATION_REASONS:
            self.compensations.labels(reason)
        for rule in LIVE_RULES:
            self.violations.labels(rule)

    # -- feeding -----------------------------------------------------------------------------------------

    def observe(self, record: str, value: Mapping[str, Any], *, live: bool = True, topic: str = "") -> None:
        """One saga record (short name, plain value), in the order read; ``live``: written after the
        monitor started (an order placed live has its violations counted); ``topic``: where it was read
        (a stuck order's path)."""
        order_id = value.get("order_id")
        if not order_id:
            return
        with self._lock:
            tracked = self.orders.get(order_id)
            if tracked is None:
                tracked = self.orders[order_id] = self._reopened(order_id)
            tracked.last_at = max(tracked.last_at, value.get("occurred_at") or 0)
            if not tracked.trail.add(record, value):
                return  # a copy
            if len(tracked.path) < PATH_LIMIT:
                tracked.path.append((topic, record, value.get("occurred_at") or 0))
            else:
                tracked.path_cut = True
            if record == PLACED:
                tracked.placed_at = value["occurred_at"]
                tracked.live = tracked.live or live
            state = entered_state(record, value)
            moved = state is not None and self._move(tracked, state, value["occurred_at"])
            if moved and record == ORDER_CANCELLED_RECORD and value.get("reason") in COMPENSATION_REASONS:
                self.compensations.labels(value["reason"]).inc()  # once per order, as it enters its end
            self._count(tracked, tracked.trail.findings(settled=False))

    def observe_stock(self, key: str, row: Mapping[str, Any] | None, *, live: bool = True) -> None:
        """One row of the inventory table's changelog (None: deleted); a sku counts once per fall below zero
        written live (one below zero in the history is noted, so it counts again only after a recovery)."""
        if is_reservation_key(key):
            return
        finding = negative_stock(key, row) if row is not None else None
        with self._lock:
            if finding is None:
                self.negative.discard(key)
            elif key not in self.negative:
                self.negative.add(key)
                if live:
                    self.violations.labels(finding.rule).inc()

    def sweep(self, read_up_to_ms: int) -> int:
        """Drop the orders settled ``settle_ms`` before ``read_up_to_ms``, judging each by every rule first; how
        many left. ``read_up_to_ms`` is the event time up to which every partition has been read (now, once
        the history is read): reading a history, one topic runs ahead of another, and an order must not
        leave before the slowest topic has delivered its records."""
        with self._lock:
            gone = [o for o, t in self.orders.items() if self._settled(t, read_up_to_ms)]
            for order_id in gone:
                tracked = self.orders.pop(order_id)
                if tracked.placed_at is not None:  # a trail without its start proves nothing
                    self._count(tracked, tracked.trail.findings(settled=True))
                if tracked.state in TERMINAL and tracked.ended_at is not None:
                    self.left[order_id] = (tracked.state, tracked.ended_at)
                    self.left.move_to_end(order_id)
                    if len(self.left) > self.remember_ended:
                        self.left.popitem(last=False)
            return len(gone)

    def _reopened(self, order_id: str) -> _Tracked:
        """A trail for an order not in the working set: in the terminal state it left in, when remembered
        (a copy of its terminal record then changes nothing), else without a state."""
        tracked = _Tracked(OrderTrail(order_id))
        remembered = self.left.pop(order_id, None)
        if remembered is not None:
            tracked.state, tracked.ended_at = remembered
        return tracked

    def _settled(self, t: _Tracked, now_ms: int) -> bool:
        if t.ended_at is not None:
            return t.ended_at + self.settle_ms <= now_ms
        return t.state is None and t.last_at + self.settle_ms <= now_ms

    def _move(self, tracked: _Tracked, state: str, at: int) -> bool:
        """Move the order into ``state`` if the saga can; whether it moved."""
        was = tracked.state
        if was is not None and (RANK[state] <= RANK[was] and not (was in TERMINAL and state in TERMINAL)):
            return False  # an earlier step read late
        if was == state:
            return False
        if was in TERMINAL and _only_way_in(state) != was:
            return False  # nothing but CONFIRMED -> REFUNDED follows a terminal state (the rules report the rest)
        if state in TERMINAL:
            before = was if was in TERMINAL else (_only_way_in(state) if was is None else None)
            if before is not None and self.ended[before] > 0:
                self.ended[before] -= 1
            self.ended[state] += 1
            if tracked.ended_at is None:
                tracked.ended_at = at
                if tracked.placed_at is not None:
                    self.completion.labels(state).observe(max(0, at - tracked.placed_at) / 1000)
        tracked.state, tracked.entered_at = state, at
        return True

    def _count(self, tracked: _Tracked, findings: list[Finding]) -> None:
        if not tracked.live:
            return  # an order of the history (or the tail of one): its trail may be half gone
        for finding in findings:
            if finding not in tracked.counted:
                tracked.counted.add(finding)
                self.violations.labels(finding.rule).inc()

    # -- reading -----------------------------------------------------------------------------------------

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        """Orders by state, stuck orders, the oldest open order's age (s) and the working set's size."""
        with self._lock:
            by_state = dict.fromkeys(RANK, 0)
            stuck, oldest = 0, None
            for t in self.orders.values():
                if t.state not in OPEN:
                    continue
                by_state[t.state] += 1
                stuck += self._stuck(t, now_ms)
                start = t.placed_at if t.placed_at is not None else t.entered_at
                oldest = start if oldest is None else min(oldest, start)
            for state, n in self.ended.items():
                by_state[state] += n
            return {"orders": by_state, "stuck": stuck, "tracked": len(self.orders),
                    "oldest_open_age_s": 0.0 if oldest is None else max(0, now_ms - oldest) / 1000}

    def _stuck(self, t: _Tracked, now_ms: int) -> bool:
        """Open past its step deadline plus the grace: the one definition of a stuck order."""
        limit = self.timeouts_ms.get(t.state) if t.state in OPEN else None
        return limit is not None and now_ms > t.entered_at + limit + self.stuck_grace_ms

    def stuck_orders(self, now_ms: int, limit: int) -> tuple[int, list[StuckOrder]]:
        """How many orders are stuck, and the ``limit`` whose deadline passed first, each with its path."""
        with self._lock:
            stuck = sorted(((o, t) for o, t in self.orders.items() if self._stuck(t, now_ms)),
                           key=lambda item: item[1].entered_at + self.timeouts_ms[str(item[1].state)])
            return len(stuck), [StuckOrder(
                order_id=order_id, state=str(t.state), entered_at_ms=t.entered_at,
                deadline_ms=t.entered_at + self.timeouts_ms[str(t.state)], placed_at_ms=t.placed_at,
                awaiting=AWAITING[str(t.state)], path_truncated=t.path_cut,
                path=[PathStep(topic=topic, record=record, at_ms=at) for topic, record, at in t.path],
            ) for order_id, t in stuck[:limit]]

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot(int(time.time() * 1000))
        orders = GaugeMetricFamily("shopflow_orders", "Orders by saga state (open ones in the monitor's working "
                                   "set, ended ones over the topics' retained history).", labels=["state"])
        for state, n in snap["orders"].items():
            orders.add_metric([state], n)
        yield orders
        yield GaugeMetricFamily("shopflow_orders_stuck", "Open orders past their step deadline (the saga's Timeout "
                                "plus a grace) that the saga has not moved on.", value=snap["stuck"])
        yield GaugeMetricFamily("shopflow_oldest_open_order_age_seconds", "Age of the oldest order not yet in a "
                                "terminal state (0 when none is open).", value=snap["oldest_open_age_s"])
        yield GaugeMetricFamily("shopflow_monitor_tracked_orders", "Orders in the monitor's working set (open, or "
                                "ended less than the settle time ago).", value=snap["tracked"])
        for metric in (self.compensations, self.violations, self.completion):
            yield from metric.collect()
