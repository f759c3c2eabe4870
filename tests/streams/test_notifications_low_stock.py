"""The inventory's low-stock alert: LowStock when available units cross the threshold downward, once per
crossing, re-armed by a rise above it; a sku's own threshold wins over the shop's; a record handled again
after a crash emits the same alert again (same event id) rather than losing it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shopflow.schemas.inventory import LowStock, ReserveStock, StockAdjusted
from shopflow.streams.inventory import handle_stock
from shopflow.tables.values import StockState

AT = datetime(2026, 1, 15, tzinfo=UTC)


def reserve(order_id: str, qty: int) -> ReserveStock:
    return ReserveStock(str(uuid.uuid4()), order_id, "SKU-L", qty, AT)


def adjust(delta: int, threshold: int | None = None) -> StockAdjusted:
    return StockAdjusted(event_id=str(uuid.uuid4()), sku="SKU-L", delta=delta, reason="test",
                         low_stock_threshold=threshold, occurred_at=AT)


class Sku:
    """One sku's state through a sequence of records, with the offsets a partition gives them."""

    def __init__(self, on_hand: int, threshold: int | None = 5):
        self.state = StockState(sku="SKU-L", on_hand=on_hand)
        self.threshold = threshold
        self.offset = 0

    def apply(self, request, *, offset: int | None = None) -> list[LowStock]:
        if offset is None:
            self.offset += 1
            offset = self.offset
        result = handle_stock(self.state, None, request, 0, offset, self.threshold)
        if result.state is not None:
            self.state = StockState.from_dict(result.state.to_dict())
        return [o.record for o in result.outputs if isinstance(o.record, LowStock)]


def test_a_fall_to_the_threshold_alerts_once():
    sku = Sku(8)
    assert sku.apply(reserve("o1", 2)) == []  # 6: above
    [alert] = sku.apply(reserve("o2", 1))  # 5: at the threshold
    assert (alert.sku, alert.available, alert.threshold) == ("SKU-L", 5, 5)
    assert sku.apply(reserve("o3", 2)) == []  # 3: still below, told already


def test_a_rise_above_re_arms_it():
    sku = Sku(7)
    sku.apply(reserve("o1", 1))
    assert len(sku.apply(reserve("o2", 2))) == 1
    assert sku.apply(adjust(10)) == []  # 14 available: above again
    assert len(sku.apply(reserve("o3", 10))) == 1


def test_a_sku_that_was_never_above_has_not_crossed():
    sku = Sku(0)
    assert sku.apply(adjust(3)) == [] and sku.apply(reserve("o1", 1)) == []


def test_a_skus_own_threshold_wins_and_none_means_no_alerts():
    sku = Sku(30, threshold=None)
    assert sku.apply(reserve("o1", 28)) == []  # no default, no threshold: quiet
    sku.apply(adjust(20, threshold=10))  # 22 available, its own threshold 10
    [alert] = sku.apply(reserve("o2", 12))
    assert (alert.available, alert.threshold) == (10, 10)


def test_the_record_handled_again_after_a_crash_emits_the_same_alert():
    sku = Sku(8)
    sku.apply(reserve("o1", 1))
    request = reserve("o2", 3)
    [alert] = sku.apply(request)
    [again] = sku.apply(request, offset=sku.offset)  # redelivered: the offset the sku has passed
    assert again.event_id == alert.event_id
    assert sku.apply(reserve("o3", 1)) == []  # and the next one is quiet: told already
