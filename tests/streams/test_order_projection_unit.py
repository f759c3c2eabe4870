"""The order projection's business logic without servers: which row change each orders event makes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shopflow.schemas.records import CancelReason, Money, OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced
from shopflow.streams.order_projection import FINAL_STATUSES, STATUS_RANK, change_of

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_each_event_maps_to_its_row_change():
    lines = (OrderLine("SKU-A", 2, Money(1999, "EUR")), OrderLine("SKU-B", 1, Money(500, "EUR")))
    p = change_of(OrderPlaced(str(uuid.uuid4()), "o", "u", lines, Money(4498, "EUR"), "tok", T0))
    assert (p.status, p.total_minor, p.currency, len(p.lines)) == ("PENDING", 4498, "EUR", 2)
    assert p.lines[0] == {"sku": "SKU-A", "quantity": 2, "unit_price": {"amount_minor": 1999, "currency": "EUR"}}
    c = change_of(OrderConfirmed(str(uuid.uuid4()), "o", "u", Money(4498, "EUR"), "pay-1", T0))
    assert (c.status, c.payment_id, c.lines) == ("CONFIRMED", "pay-1", None)
    for refunded, status in ((False, "CANCELLED"), (True, "REFUNDED")):
        x = change_of(OrderCancelled(event_id=str(uuid.uuid4()), order_id="o", user_id="u",
                                     reason=CancelReason.OUT_OF_STOCK, detail="SKU-A", refunded=refunded,
                                     occurred_at=T0))
        assert (x.status, x.reason, x.detail) == (status, "OUT_OF_STOCK", "SKU-A")


def test_statuses_only_move_forward_to_a_final_one():
    assert STATUS_RANK["PENDING"] < STATUS_RANK["CONFIRMED"] < STATUS_RANK["CANCELLED"] == STATUS_RANK["REFUNDED"]
    assert all(STATUS_RANK[s] == max(STATUS_RANK.values()) for s in FINAL_STATUSES)
