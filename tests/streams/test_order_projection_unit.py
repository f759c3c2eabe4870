"""The order projection's business logic without servers: which row change each orders event makes, and
the read model's statuses, derived from the saga, as the table's CHECK and the edge's enum spell them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from shopflow.api.schemas import OrderStatus
from shopflow.db import MIGRATIONS_DIR
from shopflow.schemas.orders import CancelReason, OrderCancelled, OrderConfirmed, OrderPlaced
from shopflow.schemas.records import Money, OrderLine
from shopflow.streams.order_projection import change_of
from shopflow.topologies.orders import FINAL_ORDER_STATUSES, ORDER_STATUS_RANK, ORDER_STATUSES
from shopflow.topologies.saga import ORDER_SAGA

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


def test_statuses_are_what_the_saga_publishes_ranked_as_before():
    assert ORDER_STATUSES == ("PENDING", "CONFIRMED", "CANCELLED", "REFUNDED")  # RESERVED is not published
    assert dict(ORDER_STATUS_RANK) == {"PENDING": 1, "CONFIRMED": 2, "CANCELLED": 3, "REFUNDED": 3}
    assert set(FINAL_ORDER_STATUSES) == {"CANCELLED", "REFUNDED"}  # CONFIRMED can still be refunded


def test_statuses_only_move_forward_to_a_final_one():
    assert all(ORDER_STATUS_RANK[s] == max(ORDER_STATUS_RANK.values()) for s in FINAL_ORDER_STATUSES)
    # Every saga move between published statuses goes up in rank (or stays), so the upsert's
    # "only forward" never refuses a real transition.
    moves = [(t.source, t.target) for t in ORDER_SAGA.transitions
             if t.source in ORDER_STATUS_RANK and t.target in ORDER_STATUS_RANK]
    assert moves and all(ORDER_STATUS_RANK[a] <= ORDER_STATUS_RANK[b] for a, b in moves)


def test_the_tables_check_and_the_edges_enum_list_the_same_statuses():
    sql = (MIGRATIONS_DIR / "0004_orders_view.sql").read_text()
    listed = re.search(r"CHECK \(status IN \(([^)]*)\)\)", sql)
    assert listed is not None
    assert tuple(v.strip().strip("'") for v in listed.group(1).split(",")) == ORDER_STATUSES
    assert [s.value for s in OrderStatus] == ["ACCEPTED", *ORDER_STATUSES]
