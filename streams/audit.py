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

Each rule is written once, here, and named (``Finding.rule``): the order rules live on ``OrderTrail``
(one order's records), so the batch ``audit`` and the live monitor (``streams/saga_health.py``, which
feeds trails one record at a time and drops them once settled) run the same code. ``settled=False``
asks only the rules whose finding can never be undone by a later record (a second capture stays a
second capture); the others wait until the order's compensations had time to land.
"""

from __future__ import annotations

import uuid
from collections import Counter
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


class Rule:
    """The invariants' names: the ``rule`` label of shopflow_invariant_violations_total (bounded)."""

    TERMINAL_REPEATED = "terminal_repeated"
    CANCELLED_UNREFUNDED = "confirmed_then_cancelled_unrefunded"
    RESERVATION_NOT_CONSUMED = "reservation_not_consumed"
    RESERVATION_NOT_RELEASED = "reservation_not_released"
    CONSUMED_UNRESERVED = "consumed_unreserved"
    DOUBLE_CHARGE = "double_charge"
    CAPTURE_UNSETTLED = "capture_unsettled"
    REFUND_MISSING = "refund_missing"
    NEGATIVE_STOCK = "negative_stock"
    RESERVED_MISMATCH = "reserved_mismatch"
    RESERVATION_LEAKED = "reservation_leaked"
    GATEWAY_DOUBLE_CAPTURE = "gateway_double_capture"


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str


@dataclass
class OrderTrail:
    """What the saga's topics said about one order: the facts its rules are checked on."""

    order_id: str
    placed_at: int | None = None
    ends: list[dict] = field(default_factory=list)  # terminal records, in the order read
    reserved: set[str] = field(default_factory=set)  # skus, per kind of record: sets, so the checks do
    committed: set[str] = field(default_factory=set)  # not depend on the order in which records of
    released: set[str] = field(default_factory=set)  # different topics were read
    captures: set[str] = field(default_factory=set)  # payment ids
    refund_done: bool = False  # a PaymentRefunded was read
    event_ids: set[str] = field(default_factory=set)

    def add(self, record: str, value: Mapping[str, Any]) -> bool:
        """Take one record in; False when it is a copy of one already taken (same event id)."""
        event_id = value.get("event_id")
        if event_id is not None:
            if event_id in self.event_ids:
                return False
            self.event_ids.add(event_id)
        if record == PLACED:
            self.placed_at = self.placed_at if self.placed_at is not None else value["occurred_at"]
        elif record in (CONFIRMED, CANCELLED):
            self.placed_at = self.placed_at if self.placed_at is not None else value["occurred_at"]
            self.ends.append({"record": record, **value})
        elif record == RESERVED:
            self.reserved.add(value["sku"])
        elif record == COMMITTED:
            self.committed.add(value["sku"])
        elif record == RELEASED:
            self.released.add(value["sku"])
        elif record == CAPTURED:
            self.captures.add(value["payment_id"])
        elif record == REFUNDED:
            self.refund_done = True
        return True

    @property
    def confirmed(self) -> bool:
        return any(e["record"] == CONFIRMED for e in self.ends)

    @property
    def refunded(self) -> bool:
        """Cancelled with a refund (after it was confirmed)."""
        return any(e["record"] == CANCELLED and e.get("refunded") for e in self.ends)

    def outcome(self) -> str | None:
        """How it ended (CONFIRMED, REFUNDED, CANCELLED(<reason>)), None while it runs."""
        if not self.ends:
            return None
        last = self.ends[-1]
        return "CONFIRMED" if last["record"] == CONFIRMED else (
            "REFUNDED" if last.get("refunded") else f"CANCELLED({last.get('reason')})")

    def findings(self, settled: bool = True) -> list[Finding]:
        """Every rule broken by what was read; with ``settled=False`` only those no later record can mend."""
        o = self.order_id
        out: list[Finding] = []
        kinds = Counter(e["record"] for e in self.ends)
        if kinds[CONFIRMED] > 1 or kinds[CANCELLED] > 1:
            out.append(Finding(Rule.TERMINAL_REPEATED, f"order {o}: terminal records repeated {dict(kinds)}"))
        if kinds[CONFIRMED] and kinds[CANCELLED] and not (
            self.ends[0]["record"] == CONFIRMED and self.ends[-1]["record"] == CANCELLED
            and self.ends[-1].get("refunded")
        ):
            out.append(Finding(Rule.CANCELLED_UNREFUNDED, f"order {o}: confirmed and cancelled without a refund"))
        if len(self.captures) > 1:
            out.append(Finding(Rule.DOUBLE_CHARGE, f"order {o}: charged {len(self.captures)} times"))
        if not settled:
            return out
        if self.ends:
            kept = self.confirmed and not self.refunded
            for sku in sorted(self.reserved):
                if kept and sku not in self.committed:
                    out.append(Finding(Rule.RESERVATION_NOT_CONSUMED,
                                       f"reservation {o}/{sku}: the order was confirmed but never consumed it"))
                if not kept and sku not in self.released:
                    out.append(Finding(Rule.RESERVATION_NOT_RELEASED,
                                       f"reservation {o}/{sku}: the order did not go through but it was not released"))
        for sku in sorted(self.committed - self.reserved):
            out.append(Finding(Rule.CONSUMED_UNRESERVED,
                               f"reservation {o}/{sku}: consumed without having been reserved"))
        if self.captures and self.ends and not self.confirmed and not self.refund_done:
            out.append(Finding(Rule.CAPTURE_UNSETTLED, f"order {o}: captured but neither confirmed nor refunded"))
        if self.refunded and self.captures and not self.refund_done:
            out.append(Finding(Rule.REFUND_MISSING, f"order {o}: cancelled with a refund, but no PaymentRefunded"))
        return out


def negative_stock(sku: str, row: Mapping[str, Any]) -> Finding | None:
    """A sku's stock row (the inventory table) with units below zero."""
    if row["on_hand"] < 0 or row["reserved"] < 0:
        return Finding(Rule.NEGATIVE_STOCK,
                       f"sku {sku}: on_hand {row['on_hand']}, reserved {row['reserved']} (negative)")
    return None


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    orders: Counter = field(default_factory=Counter)  # outcome -> count
    rules: Counter = field(default_factory=Counter)  # rule -> violations found

    @property
    def ok(self) -> bool:
        return not self.violations and not self.stuck

    def add(self, findings: Iterable[Finding]) -> None:
        for f in findings:
            self.violations.append(f.message)
            self.rules[f.rule] += 1

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
    trails: dict[str, OrderTrail] = {}
    for record, value in events:
        order_id: str = value.get("order_id") or ""
        trail = trails.get(order_id)
        if trail is None:
            trail = trails[order_id] = OrderTrail(order_id)
        trail.add(record, value)

    for order_id, trail in trails.items():
        if trail.placed_at is None:
            continue
        if not trail.ends:
            if now_ms is not None and now_ms - trail.placed_at > stuck_after_ms:
                report.stuck.append(f"order {order_id}: no terminal state "
                                    f"{(now_ms - trail.placed_at) / 1000:.0f}s after it was placed")
            report.orders["open"] += 1
        else:
            report.orders[trail.outcome()] += 1
    for trail in trails.values():
        report.add(trail.findings())

    ended = _ended(trails, orders or {})
    if settle_ms and now_ms is not None:
        ended = {o: (how, at) for o, (how, at) in ended.items() if at + settle_ms <= now_ms}
    report.add(_stock(stock or {}, ended))
    for order_id, p in (payments or {}).items():
        if p.get("charges", 0) > 1:
            report.add([Finding(Rule.GATEWAY_DOUBLE_CAPTURE,
                                f"order {order_id}: the gateway captured {p['charges']} times")])
    return report


def _ended(trails: Mapping[str, OrderTrail], orders: Mapping[str, Mapping]) -> dict[str, tuple[str, int]]:
    """Order id -> (how it ended, when), from its terminal records and from the orders table."""
    ended = {o: ("CONFIRMED" if t.ends[-1]["record"] == CONFIRMED else "CANCELLED", t.ends[-1]["occurred_at"])
             for o, t in trails.items() if t.ends}
    ended.update({o: (s["status"], s.get("updated_ms", 0)) for o, s in orders.items()
                  if s.get("status") in ("CONFIRMED", "CANCELLED", "REFUNDED")})
    return ended


def _stock(stock: Mapping[str, Mapping], ended: Mapping[str, tuple[str, int]]) -> list[Finding]:
    findings: list[Finding] = []
    held: Counter = Counter()
    for key, row in stock.items():
        if not is_reservation_key(key):
            continue
        if row["status"] == "RESERVED":
            held[row["sku"]] += row["quantity"]
            if row["order_id"] in ended:
                findings.append(Finding(Rule.RESERVATION_LEAKED,
                                        f"reservation {row['order_id']}/{row['sku']}: {row['quantity']} units "
                                        f"still held for an order that ended {ended[row['order_id']][0]} (leaked)"))
    for sku, s in stock.items():
        if is_reservation_key(sku):
            continue
        negative = negative_stock(sku, s)
        if negative is not None:
            findings.append(negative)
        if s["reserved"] != held[sku]:
            findings.append(Finding(Rule.RESERVED_MISMATCH,
                                    f"sku {sku}: reserved {s['reserved']} but open reservations hold {held[sku]}"))
    return findings
