"""The saga's invariants (design.md), checked on what actually happened.

``audit`` takes the records that crossed the saga's topics (in order) and the tables' state, and
reports every violation and every stuck order:

- every order reaches a terminal state, each terminal record exactly once (a confirmed order may
  later be cancelled with a refund; nothing else follows a terminal record);
- for every sku: on_hand >= 0, reserved >= 0, reserved equals the sum of open reservations;
- no reservation is still held for an order that has ended (a leak: units nobody can sell again);
- no order is charged twice; every capture belongs to a confirmed order or is refunded;
- every reservation is consumed by a confirmed order (CommitStock) or released (StockReleased).

Records are told apart by event id: a copy of a record (emitted again after a crash, with the same id)
is the same record, not a second one. The replay harness runs it after every scenario, the end-to-end test
after 1,000 orders, and
``shopflow audit`` on the live topics and changelogs.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shopflow.schemas.inventory import CommitStock, StockReleased, StockReserved
from shopflow.schemas.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from shopflow.schemas.payments import PaymentRefunded, PaymentSucceeded
from shopflow.schemas.records import ms_of
from shopflow.tables.values import is_reservation_key

# The records the audit reads, by the short names readers give them (``TopicReader``, the replay log).
PLACED = OrderPlaced.__name__
CONFIRMED = OrderConfirmed.__name__
CANCELLED = OrderCancelled.__name__
RESERVED = StockReserved.__name__
COMMITTED = CommitStock.__name__
RELEASED = StockReleased.__name__
CAPTURED = PaymentSucceeded.__name__
REFUNDED = PaymentRefunded.__name__


def plain(value: Any) -> Any:
    """A decoded Avro value as the audit and the readers take it: uuids as strings, timestamps as epoch ms."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return ms_of(value)
    return value


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    orders: Counter = field(default_factory=Counter)  # outcome -> count

    @property
    def ok(self) -> bool:
        return not self.violations and not self.stuck

    def render(self) -> str:
        lines = [f"orders: {sum(self.orders.values())} "
                 f"({', '.join(f'{k} {v}' for k, v in sorted(self.orders.items())) or 'none'})"]
        lines.append(f"invariant violations: {len(self.violations)}")
        lines += [f"  - {v}" for v in self.violations[:50]]
        lines.append(f"stuck orders: {len(self.stuck)}")
        lines += [f"  - {s}" for s in self.stuck[:50]]
        return "\n".join(lines)


def audit(
    events: Iterable[tuple[str, dict]],
    stock: Mapping[str, Mapping] | None = None,
    payments: Mapping[str, Mapping] | None = None,
    now_ms: int | None = None,
    stuck_after_ms: int = 60_000,
    orders: Mapping[str, Mapping] | None = None,
    settle_ms: int = 0,
) -> Report:
    """``events``: (record short name, plain value) in the order they were produced. ``stock``: the
    inventory table (skus and reservation rows); ``orders``: the orders table, for the statuses of
    orders whose records were not read. On a live system, ``settle_ms`` gives an order's last
    commands (CommitStock, ReleaseStock) that long to be applied after it ended before a unit still
    held for it counts as leaked."""
    report = Report()
    ids: set[str] = set()
    placed_at: dict[str, int] = {}
    terminal: dict[str, list[dict]] = defaultdict(list)
    confirmed: set[str] = set()
    refunded_orders: set[str] = set()
    # (order, sku) pairs per kind of record: sets, so the audit does not depend on the order in which
    # records of different topics were read.
    reserved: set[tuple[str, str]] = set()
    committed: set[tuple[str, str]] = set()
    released: set[tuple[str, str]] = set()
    captures: dict[str, set[str]] = defaultdict(set)
    refunds: set[str] = set()

    for record, value in events:
        event_id = value.get("event_id")
        if event_id is not None:
            if event_id in ids:
                continue  # a copy of a record already counted
            ids.add(event_id)
        order_id: str = value.get("order_id") or ""
        if record == PLACED:
            placed_at.setdefault(order_id, value["occurred_at"])
        elif record in (CONFIRMED, CANCELLED):
            placed_at.setdefault(order_id, value["occurred_at"])
            terminal[order_id].append({"record": record, **value})
            if record == CONFIRMED:
                confirmed.add(order_id)
            elif value.get("refunded"):
                refunded_orders.add(order_id)
        elif record == RESERVED:
            reserved.add((order_id, value["sku"]))
        elif record == COMMITTED:
            committed.add((order_id, value["sku"]))
        elif record == RELEASED:
            released.add((order_id, value["sku"]))
        elif record == CAPTURED:
            captures[order_id].add(value["payment_id"])
        elif record == REFUNDED:
            refunds.add(order_id)

    for order_id, at in placed_at.items():
        ends = terminal.get(order_id, [])
        kinds = Counter(e["record"] for e in ends)
        if not ends:
            if now_ms is not None and now_ms - at > stuck_after_ms:
                report.stuck.append(
                    f"order {order_id}: no terminal state {(now_ms - at) / 1000:.0f}s after it was placed")
            report.orders["open"] += 1
            continue
        if kinds[CONFIRMED] > 1 or kinds[CANCELLED] > 1:
            report.violations.append(f"order {order_id}: terminal records repeated {dict(kinds)}")
        if kinds[CONFIRMED] and kinds[CANCELLED] and not (
            ends[0]["record"] == CONFIRMED and ends[-1]["record"] == CANCELLED and ends[-1].get("refunded")
        ):
            report.violations.append(f"order {order_id}: confirmed and cancelled without a refund")
        last = ends[-1]
        outcome = "CONFIRMED" if last["record"] == CONFIRMED else (
            "REFUNDED" if last.get("refunded") else f"CANCELLED({last.get('reason')})")
        report.orders[outcome] += 1

    for order_id, sku in sorted(reserved):
        if order_id not in terminal:
            continue  # still running
        kept = order_id in confirmed and order_id not in refunded_orders
        if kept and (order_id, sku) not in committed:
            report.violations.append(f"reservation {order_id}/{sku}: the order was confirmed but never consumed it")
        if not kept and (order_id, sku) not in released:
            report.violations.append(
                f"reservation {order_id}/{sku}: the order did not go through but it was not released")
    for order_id, sku in sorted(committed - reserved):
        report.violations.append(f"reservation {order_id}/{sku}: consumed without having been reserved")

    for order_id, ids in captures.items():
        if len(ids) > 1:
            report.violations.append(f"order {order_id}: charged {len(ids)} times")
        if order_id not in confirmed and order_id not in refunds and order_id in terminal:
            report.violations.append(f"order {order_id}: captured but neither confirmed nor refunded")
    for order_id in refunded_orders:
        if captures.get(order_id) and order_id not in refunds:
            report.violations.append(f"order {order_id}: cancelled with a refund, but no PaymentRefunded")

    ended = _ended(terminal, orders or {})
    if settle_ms and now_ms is not None:
        ended = {o: (how, at) for o, (how, at) in ended.items() if at + settle_ms <= now_ms}
    report.violations += _stock(stock or {}, ended)
    for order_id, p in (payments or {}).items():
        if p.get("charges", 0) > 1:
            report.violations.append(f"order {order_id}: the gateway captured {p['charges']} times")
    return report


def _ended(terminal: Mapping[str, list[dict]], orders: Mapping[str, Mapping]) -> dict[str, tuple[str, int]]:
    """Order id -> (how it ended, when), from its terminal records and from the orders table."""
    ended = {o: ("CONFIRMED" if ends[-1]["record"] == CONFIRMED else "CANCELLED", ends[-1]["occurred_at"])
             for o, ends in terminal.items()}
    ended.update({o: (s["status"], s.get("updated_ms", 0)) for o, s in orders.items()
                  if s.get("status") in ("CONFIRMED", "CANCELLED", "REFUNDED")})
    return ended


def _stock(stock: Mapping[str, Mapping], ended: Mapping[str, tuple[str, int]]) -> list[str]:
    violations: list[str] = []
    held: Counter = Counter()
    for key, row in stock.items():
        if not is_reservation_key(key):
            continue
        if row["status"] == "RESERVED":
            held[row["sku"]] += row["quantity"]
            if row["order_id"] in ended:
                violations.append(f"reservation {row['order_id']}/{row['sku']}: {row['quantity']} units still held "
                                  f"for an order that ended {ended[row['order_id']][0]} (leaked)")
    for sku, s in stock.items():
        if is_reservation_key(sku):
            continue
        if s["on_hand"] < 0 or s["reserved"] < 0:
            violations.append(f"sku {sku}: on_hand {s['on_hand']}, reserved {s['reserved']} (negative)")
        if s["reserved"] != held[sku]:
            violations.append(f"sku {sku}: reserved {s['reserved']} but open reservations hold {held[sku]}")
    return violations
