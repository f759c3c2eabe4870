"""The auditor finds each kind of invariant violation: Given records and tables, Then this finding."""

from __future__ import annotations

import pytest

from shopflow.streams.audit import audit
from shopflow.tables.values import reservation_key

T0 = 1_767_225_600_000


def placed(o="o-1"):
    return ("OrderPlaced", {"order_id": o, "occurred_at": T0})


def confirmed(o="o-1", event_id=None):
    return ("OrderConfirmed", {"order_id": o, "occurred_at": T0, **({"event_id": event_id} if event_id else {})})


def cancelled(o="o-1", refunded=False, reason="OUT_OF_STOCK"):
    return ("OrderCancelled", {"order_id": o, "occurred_at": T0, "refunded": refunded, "reason": reason})


def rec(name, o="o-1", sku="A", **kw):
    return (name, {"order_id": o, "sku": sku, **kw})


def row(sku, order_id, quantity, status):
    """A reservation row of the inventory table."""
    return {reservation_key(sku, order_id): {"sku": sku, "order_id": order_id, "quantity": quantity, "status": status}}


CASES = [
    ("clean confirmed order",
     [placed(), rec("StockReserved"), rec("CommitStock"), ("PaymentSucceeded", {"order_id": "o-1", "payment_id": "p"}),
      confirmed()], {}, {}, None),
    ("terminal twice", [placed(), confirmed(), confirmed()], {}, {}, "terminal records repeated"),
    ("confirmed then cancelled without refund", [placed(), confirmed(), cancelled()], {}, {},
     "confirmed and cancelled without a refund"),
    ("reservation left behind", [placed(), rec("StockReserved"), cancelled()], {}, {},
     "did not go through but it was not released"),
    ("reservation of a confirmed order never consumed", [placed(), rec("StockReserved"), confirmed()], {}, {},
     "confirmed but never consumed"),
    ("charged twice", [placed(), ("PaymentSucceeded", {"order_id": "o-1", "payment_id": "p1"}),
                       ("PaymentSucceeded", {"order_id": "o-1", "payment_id": "p2"}), confirmed()], {}, {},
     "charged 2 times"),
    ("capture kept for a cancelled order", [placed(), ("PaymentSucceeded", {"order_id": "o-1", "payment_id": "p"}),
                                            cancelled(reason="TIMEOUT")], {}, {},
     "captured but neither confirmed nor refunded"),
    ("reserved count drifts from reservations", [],
     {"A": {"on_hand": 5, "reserved": 2}, **row("A", "o-1", 1, "RESERVED")}, {},
     "reserved 2 but open reservations hold 1"),
    ("negative stock", [], {"A": {"on_hand": -1, "reserved": 0}}, {}, "(negative)"),
    ("units held for an order that ended", [placed(), rec("StockReserved"), cancelled(), rec("StockReleased")],
     {"A": {"on_hand": 5, "reserved": 1}, **row("A", "o-1", 1, "RESERVED")}, {}, "still held for an order that ended"),
    ("a settled row holds nothing", [], {"A": {"on_hand": 5, "reserved": 0}, **row("A", "o-1", 1, "RELEASED")}, {},
     None),
    ("a copy of a terminal record is the same record",
     [placed(), rec("StockReserved"), rec("CommitStock"), confirmed(event_id="e-1"), confirmed(event_id="e-1")], {}, {},
     None),
    ("a second terminal record with its own id",
     [placed(), confirmed(event_id="e-1"), confirmed(event_id="e-2")], {}, {},
     "terminal records repeated"),
    ("gateway captured twice", [], {}, {"o-1": {"charges": 2}}, "the gateway captured 2 times"),
]


@pytest.mark.parametrize("case,events,stock,payments,finding", CASES, ids=[c[0] for c in CASES])
def test_audit_finds(case, events, stock, payments, finding):
    report = audit(events, stock, payments, now_ms=T0)
    if finding is None:
        assert report.violations == [] and report.ok
    else:
        assert any(finding in v for v in report.violations), report.violations


def test_an_order_open_past_the_threshold_is_stuck_and_a_recent_one_is_not():
    report = audit([placed("old"), ("OrderPlaced", {"order_id": "new", "occurred_at": T0 + 50_000})],
                   now_ms=T0 + 61_000, stuck_after_ms=60_000)
    assert [s.split(":")[0] for s in report.stuck] == ["order old"]
    assert not report.ok
