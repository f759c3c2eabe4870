"""The inventory agent's handler as a Given/When/Then table: Given a sku's stored stock (on hand, the lines it
holds open) and the settled row of the request's order line, When one stock request arrives, Then the stock
written (or nothing), the row it settles, its answer ("<type> <key>") and whether it was met before.

After every row the sku's invariants hold (reserved >= 0, on_hand >= 0, reserved the sum of its open lines),
and every row run twice from the same Given answers with the same ids. The tests after the table deliver
records again after a crash (an offset the sku has passed) and list a new sku, as the replay scenarios do.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass, field, replace

import pytest
from handler_factories import (
    T0,
    adjust,
    as_stored,
    commit,
    emitted,
    emitted_ids,
    product_listed,
    release,
    reserve,
    settled,
    stock,
)

from shopflow.schemas.catalog import ProductDeleted
from shopflow.schemas.inventory import RejectReason, StockAdjusted
from shopflow.streams.inventory import StockRequest, StockResult, handle_stock, stock_for_new_product
from shopflow.streams.runtime import Unexpected
from shopflow.tables.values import Reservation, StockState, encode


@dataclass(frozen=True)
class Case:
    id: str
    given: StockState | None
    when: StockRequest
    given_row: Reservation | None = None  # the line's settled row, as stored
    stock: tuple[int, int] | None = None  # (on_hand, reserved) written; None: the sku's value is not written
    held: Mapping[str, int] | None = None  # the open lines written, when they change
    answer: str | None = None  # "<type> <key>"
    answer_fields: Mapping[str, object] = field(default_factory=dict)
    row: tuple[str, int] | None = None  # (status, quantity) of the settled row written
    duplicate: bool = False
    raises: str = ""


CASES = [
    # -- ReserveStock ------------------------------------------------------------------------------------
    Case("reserve within stock", stock(5), reserve(2), stock=(5, 2), held={"o-1": 2}, answer="StockReserved o-1",
         answer_fields={"quantity": 2, "remaining_on_hand": 3}),
    Case("reserve the last unit", stock(1), reserve(1), stock=(1, 1), answer="StockReserved o-1",
         answer_fields={"remaining_on_hand": 0}),
    Case("race for the last unit: the second order is rejected", stock(1, {"o-8": 1}), reserve(1, "o-9"),
         answer="StockRejected o-9", answer_fields={"reason": RejectReason.OUT_OF_STOCK, "available": 0},
         row=("REJECTED", 1)),
    Case("reserve over stock", stock(5, {"o-2": 4}), reserve(2), answer="StockRejected o-1",
         answer_fields={"reason": RejectReason.OUT_OF_STOCK, "available": 1, "quantity": 2}, row=("REJECTED", 2)),
    Case("reserve a sku listed but never stocked", stock(0), reserve(1), answer="StockRejected o-1",
         answer_fields={"reason": RejectReason.OUT_OF_STOCK, "available": 0}, row=("REJECTED", 1)),
    Case("reserve an unknown sku", None, reserve(1), answer="StockRejected o-1",
         answer_fields={"reason": RejectReason.UNKNOWN_SKU, "available": 0}, row=("REJECTED", 1)),
    Case("reserve a line held already (re-sent): answered again", stock(5, {"o-1": 2}), reserve(2),
         answer="StockReserved o-1", answer_fields={"remaining_on_hand": 3}, duplicate=True),
    Case("reserve a line rejected before: the same answer", stock(5), reserve(2),
         settled("REJECTED", 2, available=1), answer="StockRejected o-1",
         answer_fields={"reason": RejectReason.OUT_OF_STOCK, "available": 1}, duplicate=True),
    Case("reserve a line released before it came: reserves nothing, says nothing", stock(5), reserve(2),
         settled("RELEASED", 0), duplicate=True),
    Case("reserve a line consumed before: answered reserved", stock(3), reserve(2), settled("COMMITTED", 2),
         answer="StockReserved o-1", duplicate=True),
    # -- CommitStock -------------------------------------------------------------------------------------
    Case("commit a held line: it leaves on_hand and reserved", stock(5, {"o-1": 2, "o-2": 1}), commit(2),
         stock=(3, 1), held={"o-2": 1}, row=("COMMITTED", 2)),
    Case("commit a line never held: nothing", stock(5), commit(2)),
    Case("commit a line settled before: nothing, met before", stock(3), commit(2), settled("COMMITTED", 2),
         duplicate=True),
    Case("commit for an unknown sku: nothing", None, commit(2)),
    # -- ReleaseStock ------------------------------------------------------------------------------------
    Case("release a held line", stock(5, {"o-1": 2, "o-2": 1}), release(2), stock=(5, 1), held={"o-2": 1},
         answer="StockReleased o-1", answer_fields={"quantity": 2}, row=("RELEASED", 2)),
    Case("release a line never reserved: a tombstone, so a late reserve reserves nothing", stock(5), release(2),
         answer="StockReleased o-1", row=("RELEASED", 0)),
    Case("release for an unknown sku: a tombstone too", None, release(2), answer="StockReleased o-1",
         row=("RELEASED", 0)),
    Case("release a consumed line: its units back on hand", stock(3), release(2, consumed=True),
         settled("COMMITTED", 2), stock=(5, 0), answer="StockReleased o-1", row=("RELEASED", 2)),
    Case("release a consumed line whose row was dropped: the order's quantity back", stock(3),
         release(2, consumed=True), stock=(5, 0), answer="StockReleased o-1", row=("RELEASED", 2)),
    Case("release a line released before: answered, nothing changes", stock(5), release(2), settled("RELEASED", 2),
         answer="StockReleased o-1", duplicate=True),
    Case("release a rejected line: answered, nothing changes", stock(5), release(2),
         settled("REJECTED", 2, available=1), answer="StockReleased o-1", duplicate=True),
    # -- StockAdjusted -----------------------------------------------------------------------------------
    Case("goods received", stock(5), adjust(3), stock=(8, 0)),
    Case("shrinkage above the reserved units", stock(5, {"o-2": 2}), adjust(-3), stock=(2, 2), held={"o-2": 2}),
    Case("a new sku's first stock", None, adjust(4), stock=(4, 0)),
    Case("an adjustment applied before: nothing", replace(stock(5), adjustments=[adjust(3).event_id]), adjust(3),
         duplicate=True),
    Case("shrinkage below the reserved units raises", stock(5, {"o-2": 2}), adjust(-4),
         raises="would leave 1 on hand for 2 reserved"),
]


def run(case: Case, offset: int | None = None) -> StockResult:
    # Each run gets its own copy: the handler changes the state it is given.
    return handle_stock(deepcopy(case.given), case.given_row, case.when, T0, offset)


@pytest.mark.parametrize("case", [c for c in CASES if not c.raises], ids=lambda c: c.id)
def test_given_stock_when_a_request_arrives_then_stock_row_and_answer(case: Case) -> None:
    result = run(case)

    if case.stock is None:
        assert result.state is None
    else:
        assert result.state is not None and (result.state.on_hand, result.state.reserved) == case.stock
        if case.held is not None:
            assert result.state.open == case.held
    assert emitted(result) == ([case.answer] if case.answer else [])
    for name, value in case.answer_fields.items():
        assert getattr(result.outputs[0].record, name) == value, name
    assert ((result.row.status, result.row.quantity) if result.row else None) == case.row
    if result.row is not None:
        line = (case.when.sku, getattr(case.when, "order_id"), T0)  # noqa: B009 - only line requests settle one
        assert (result.row.sku, result.row.order_id, result.row.settled_ms) == line
    assert result.duplicate is case.duplicate


@pytest.mark.parametrize("case", [c for c in CASES if not c.raises], ids=lambda c: c.id)
def test_the_sku_invariants_hold_and_answers_repeat_their_ids(case: Case) -> None:
    first, second = run(case), run(case)

    written = first.state
    if written is not None:
        assert written.on_hand >= 0 and written.reserved >= 0
        assert written.reserved == sum(written.open.values())
    assert emitted_ids(second) == emitted_ids(first)


@pytest.mark.parametrize("case", [c for c in CASES if c.raises], ids=lambda c: c.id)
def test_a_request_the_stock_cannot_take_raises_unexpected(case: Case) -> None:
    with pytest.raises(Unexpected, match=case.raises):
        run(case)


def test_a_request_sent_again_is_answered_with_the_first_answer_id() -> None:
    first = handle_stock(stock(5), None, reserve(2), T0)
    assert first.state is not None

    again = handle_stock(first.state, None, reserve(2), T0 + 7)  # the orders agent re-sent it after a crash

    assert again.duplicate and again.state is None and emitted_ids(again) == emitted_ids(first)
    assert first.state.reserved == 2


def test_a_late_reserve_after_its_release_reserves_nothing() -> None:
    released = handle_stock(stock(5), None, release(2), T0)
    assert released.state is None and released.row is not None

    late = handle_stock(stock(5), released.row, reserve(2), T0 + 1)

    assert late.state is None and late.outputs == [] and late.duplicate


# -- delivered again after a crash: an offset the sku has passed ---------------------------------------------


@pytest.mark.parametrize("given,request_", [
    (stock(5), reserve(2)),
    (stock(5, {"o-1": 2}), release(2)),
    (stock(5, {"o-1": 2}), commit(2)),
    (stock(5), adjust(3)),
], ids=["ReserveStock", "ReleaseStock of a held line", "CommitStock of a held line", "StockAdjusted"])
@pytest.mark.parametrize("offset_again", [7, 6], ids=["same offset", "an earlier offset"])
def test_an_already_applied_offset_repeats_its_answer_and_changes_nothing(
    given: StockState, request_: StockRequest, offset_again: int
) -> None:
    first = handle_stock(deepcopy(given), None, request_, T0, offset=7)
    assert first.state is not None and first.state.offset == 7
    stored = as_stored(first.state)  # as the worker reads it back
    kept = encode(stored.to_dict())  # the bytes the table holds

    again = handle_stock(stored, first.row, request_, T0 + 9, offset=offset_again)

    assert again.duplicate
    assert emitted_ids(again) == emitted_ids(first)  # answered anew (at its time), under the same ids
    assert encode(stored.to_dict()) == kept


def test_a_settled_row_lost_in_a_crash_is_written_again() -> None:
    # The release of a held line wrote the sku's value and then its row; the crash kept only the value.
    first = handle_stock(stock(5, {"o-1": 2}), None, release(2), T0, offset=7)
    assert first.state is not None and first.row is not None

    again = handle_stock(first.state, None, release(2), T0 + 9, offset=7)

    assert again.duplicate and again.row == first.row
    assert (first.state.on_hand, first.state.reserved) == (5, 0)


# -- a new sku listed in the catalog --------------------------------------------------------------------------


def test_a_new_sku_listed_gets_a_zero_stock_entry_and_is_out_of_stock_until_stock_arrives() -> None:
    (listed,) = stock_for_new_product(product_listed(version=1))
    assert (listed.short, listed.key) == ("StockAdjusted", "SKU-NEW")
    assert isinstance(listed.record, StockAdjusted) and listed.record.delta == 0
    assert stock_for_new_product(product_listed(version=2)) == []
    assert stock_for_new_product(ProductDeleted(listed.event_id, "SKU-NEW", 3, listed.record.occurred_at)) == []

    entry = handle_stock(None, None, listed.record, T0).state
    assert entry is not None and (entry.on_hand, entry.reserved) == (0, 0)
    assert [o.record for o in stock_for_new_product(product_listed(version=1))] == [listed.record]  # same id
    relisted = handle_stock(entry, None, listed.record, T0 + 1)
    rejected = handle_stock(entry, None, reserve(1, sku="SKU-NEW"), T0 + 2)

    assert relisted.duplicate and relisted.state is None
    assert [getattr(o.record, "reason") for o in rejected.outputs] == [RejectReason.OUT_OF_STOCK]  # noqa: B009
