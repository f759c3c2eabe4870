"""The inventory agent's logic: each sku's stock, and the only writer of it.

``handle_stock`` takes a sku's state (counters and the lines it holds open), the settled row of the
order line a request is about, the request and its offset on stock-requests; it returns what to
write and the answer. What must change together lives in one value (the sku's), so a crash between
two writes can never leave counters and holds disagreeing; the settled row is written after it.

Idempotent three ways: a record delivered again after a crash has an offset the sku has passed, and
is answered again with the writes repeated (the crash may have lost them); a request for a line the
sku holds or has settled is answered from that (an orders agent sending it again after its own crash);
CommitStock or ReleaseStock of a line already settled changes nothing.

Stock: ``on_hand`` units in the warehouse, ``reserved`` of them held for orders; a reservation is
consumed by CommitStock (both drop) or given back by ReleaseStock (a consumed one goes back on hand).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shopflow.schemas.catalog import ProductDeleted, ProductUpserted
from shopflow.schemas.inventory import (
    CommitStock,
    LowStock,
    RejectReason,
    ReleaseStock,
    ReserveStock,
    StockAdjusted,
    StockRejected,
    StockReleased,
    StockReserved,
)
from shopflow.schemas.records import datetime_of_ms
from shopflow.streams.runtime import Output, Result, Unexpected, derived_event_id
from shopflow.tables.values import SETTLED_KEEP_MS, Reservation, StockState, is_reservation_key, reservation_key

# A request about one order line of a sku, and everything that reaches the inventory agent.
LineRequest = ReserveStock | ReleaseStock | CommitStock
StockRequest = LineRequest | StockAdjusted


@dataclass
class StockResult(Result):
    """A stock request's result: the sku's state (``state``) and the settled row it wrote, if any."""

    row: Reservation | None = None


def row_key(request: StockRequest) -> str | None:
    """The reservation row a request is about (None for an adjustment, which concerns the sku only)."""
    return None if isinstance(request, StockAdjusted) else reservation_key(request.sku, request.order_id)


def stock_for_new_product(record: ProductUpserted | ProductDeleted) -> list[Output]:
    """A sku listed for the first time (ProductUpserted version 1) gets a stock entry of zero units.

    catalog.products has its own partition count, so the inventory cannot write its table from it;
    a zero StockAdjusted, keyed by sku onto stock-requests, lets the sku's owner create the entry.
    """
    if not isinstance(record, ProductUpserted) or record.version != 1:
        return []
    return [Output(StockAdjusted(
        event_id=derived_event_id(record.event_id, "listed"), sku=record.sku, delta=0,
        reason="new sku listed in the catalog", adjusted_by=None, occurred_at=record.occurred_at,
    ))]


def handle_stock(state: StockState | None, row: Reservation | None, request: StockRequest,
                 now_ms: int, offset: int | None = None, low_stock_threshold: int | None = None) -> StockResult:
    """``low_stock_threshold``: the shop's default (a sku's own wins); None: no LowStock at all."""
    if state is not None and offset is not None and offset <= state.offset:
        return _again(state, row, request, now_ms, offset)
    if isinstance(request, StockAdjusted):
        result = _adjust(state or StockState(sku=request.sku), request)
    elif isinstance(request, ReserveStock):
        result = _reserve(state, row, request, now_ms)
    elif isinstance(request, CommitStock):
        result = _commit(state, row, request, now_ms)
    elif isinstance(request, ReleaseStock):
        result = _release(state or StockState(sku=request.sku), row, request, now_ms)
    else:
        raise Unexpected(f"the inventory agent has no rule for {type(request).__name__}")
    alert = _low_stock(result.state, request, now_ms, low_stock_threshold) if result.state is not None else None
    if alert is not None:
        result.outputs.append(alert)
    if result.state is not None and offset is not None:
        result.state.offset = offset
        result.state.last_row = result.row.to_dict() if result.row is not None else None
        result.state.last_alert = alert.stored() if alert is not None else None
    return result


def _low_stock(state: StockState, request: StockRequest, now_ms: int, default: int | None) -> Output | None:
    """LowStock when available units cross the threshold downward; once per crossing: a sku at or below it
    stays quiet until it has been above it again."""
    threshold = state.low_stock_threshold if state.low_stock_threshold is not None else default
    if threshold is None:
        return None
    if state.available > threshold:
        state.below_threshold = False
        return None
    if state.below_threshold:
        return None
    state.below_threshold = True
    return Output(LowStock(event_id=derived_event_id(request.event_id, "LowStock"), sku=state.sku,
                           available=state.available, threshold=threshold, occurred_at=_at(now_ms)))


def _again(state: StockState, row: Reservation | None, request: StockRequest, now_ms: int,
           offset: int) -> StockResult:
    """A record applied before a crash: the same answer, and the same writes again (lost, perhaps)."""
    order_id = None if isinstance(request, StockAdjusted) else request.order_id
    if row is None and offset == state.offset and state.last_row and state.last_row["order_id"] == order_id:
        row = Reservation.from_dict(state.last_row)
    outputs: list[Output] = []
    if isinstance(request, ReserveStock) and (request.order_id in state.open or row is not None):
        outputs = _reserve(state, row, request, now_ms).outputs  # only its answering branches can run
    elif isinstance(request, ReleaseStock):
        outputs = [_released(request, now_ms)]
    if offset == state.offset and state.last_alert:  # its LowStock may have been lost with the crash
        outputs = [*outputs, Output.restore(state.last_alert)]
    return StockResult(state=state, row=row, outputs=outputs, duplicate=True)


def _reserve(state: StockState | None, row: Reservation | None, request: ReserveStock, now_ms: int) -> StockResult:
    order_id, qty = request.order_id, request.quantity
    if state is not None and order_id in state.open:  # held already: answer again, change nothing
        return StockResult(outputs=[_reserved(request, now_ms, state.available)], duplicate=True)
    if row is not None:  # settled already: answer what was answered
        if row.status == "REJECTED":
            return StockResult(outputs=[_rejected(request, now_ms, RejectReason(row.reason), row.available)],
                               duplicate=True)
        if row.quantity == 0:
            # Released before this request arrived (a request re-sent after its order ended): the
            # order has ended, nothing waits for an answer and nothing may be held for it.
            return StockResult(duplicate=True)
        return StockResult(outputs=[_reserved(request, now_ms, state.available if state else 0)], duplicate=True)
    if state is None:
        row = Reservation(sku=request.sku, order_id=order_id, quantity=qty, status="REJECTED",
                          reason="UNKNOWN_SKU", settled_ms=now_ms)
        return StockResult(row=row, outputs=[_rejected(request, now_ms, RejectReason.UNKNOWN_SKU, 0)])
    if state.available >= qty:
        state.reserved += qty
        state.open[order_id] = qty
        return StockResult(state=state, outputs=[_reserved(request, now_ms, state.available)])
    row = Reservation(sku=state.sku, order_id=order_id, quantity=qty, status="REJECTED",
                      available=state.available, settled_ms=now_ms)
    return StockResult(row=row, outputs=[_rejected(request, now_ms, RejectReason.OUT_OF_STOCK, state.available)])


def _commit(state: StockState | None, row: Reservation | None, request: CommitStock, now_ms: int) -> StockResult:
    order_id = request.order_id
    if state is None or order_id not in state.open:
        return StockResult(duplicate=row is not None)  # settled already, or nothing was held
    qty = state.open.pop(order_id)
    state.reserved -= qty
    state.on_hand -= qty
    row = Reservation(sku=state.sku, order_id=order_id, quantity=qty, status="COMMITTED", settled_ms=now_ms)
    return StockResult(state=state, row=row)


def _release(state: StockState, row: Reservation | None, request: ReleaseStock, now_ms: int) -> StockResult:
    """Give a line back; always answered (StockReleased), whatever it was, so the order's compensation
    is acknowledged. Only a held or a consumed line changes the counters."""
    order_id = request.order_id
    answer = [_released(request, now_ms)]
    if order_id in state.open:
        qty = state.open.pop(order_id)
        state.reserved -= qty
    elif row is not None and row.status == "COMMITTED":
        qty = row.quantity
        state.on_hand += qty  # cancelled after payment: the units come back
    elif row is None and request.consumed:
        # A consumed line whose row has been dropped since: the order says the units left on_hand.
        qty = request.quantity
        state.on_hand += qty
    elif row is None:
        # Nothing was held (the request was lost, or is still on its way): remember the release, so a
        # request that comes after it is not applied. The sku's own state does not change.
        row = Reservation(sku=request.sku, order_id=order_id, quantity=0, status="RELEASED", settled_ms=now_ms)
        return StockResult(row=row, outputs=answer)
    else:
        return StockResult(outputs=answer, duplicate=True)  # released or rejected before
    row = Reservation(sku=state.sku, order_id=order_id, quantity=qty, status="RELEASED", settled_ms=now_ms)
    return StockResult(state=state, row=row, outputs=answer)


def _adjust(state: StockState, request: StockAdjusted) -> StockResult:
    if state.adjusted(request.event_id):
        return StockResult(duplicate=True)
    if state.on_hand + request.delta < state.reserved:
        raise Unexpected(
            f"adjusting {state.sku} by {request.delta} would leave {state.on_hand + request.delta} on hand "
            f"for {state.reserved} reserved"
        )
    state.on_hand += request.delta
    if request.low_stock_threshold is not None:
        state.low_stock_threshold = request.low_stock_threshold
    state.remember_adjustment(request.event_id)
    return StockResult(state=state)


# The answers, back to the orders agent; each id derives from its request's and the answer's kind.


def _answer_id(request: LineRequest, answer: type[StockReserved | StockRejected | StockReleased]) -> str:
    return derived_event_id(request.event_id, answer.__name__)


def _at(now_ms: int) -> datetime:
    return datetime_of_ms(now_ms)


def _reserved(request: ReserveStock, now_ms: int, remaining_on_hand: int) -> Output:
    return Output(StockReserved(_answer_id(request, StockReserved), request.order_id, request.sku, request.quantity,
                                remaining_on_hand, _at(now_ms)))


def _rejected(request: ReserveStock, now_ms: int, reason: RejectReason, available: int) -> Output:
    return Output(StockRejected(_answer_id(request, StockRejected), request.order_id, request.sku, request.quantity,
                                reason, available, _at(now_ms)))


def _released(request: ReleaseStock, now_ms: int) -> Output:
    return Output(StockReleased(_answer_id(request, StockReleased), request.order_id, request.sku, request.quantity,
                                _at(now_ms)))


class SettledRows:
    """The settled reservation rows of the partitions a process owns, by when they may be dropped.

    The worker, the replay harness and the benchmarks' peer loop call ``track`` for every record the
    inventory handles: it notes the rows the record wrote and adds to its writes the deletes of that
    partition's rows whose keep time is over. Deletes thus happen inside the stream, in the partition
    that owns the row, and reach the changelog like any other write. A partition met for the first
    time is read once for the rows settled before this process took it.
    """

    def __init__(self, keep_ms: int = SETTLED_KEEP_MS):
        self.keep_ms = keep_ms
        self._due: dict[int, list[tuple[int, str]]] = {}

    def track(self, partition: int, writes: dict[str, dict[str, Any] | None],
              load: Callable[[str], dict[str, Any] | None], now_ms: int,
              stored_rows: Callable[[], Iterable[tuple[str, dict[str, Any] | None]]]) -> None:
        if partition not in self._due:
            self._due[partition] = []
            for key, value in stored_rows():
                self._note(partition, key, value)
        for key, value in writes.items():
            self._note(partition, key, value)
        due = self._due[partition]
        while due and due[0][0] <= now_ms:
            _, key = heapq.heappop(due)
            current = load(key)  # a row written again since it was noted is checked anew
            if current is not None and Reservation.from_dict(current).expired(now_ms, self.keep_ms):
                writes.setdefault(key, None)

    def forget(self, partition: int) -> None:
        self._due.pop(partition, None)

    def _note(self, partition: int, key: str, value: object) -> None:
        # Faust keeps its own entries (a partition's restored offset) in the same database: rows only.
        if is_reservation_key(key) and isinstance(value, dict) and value.get("settled_ms") is not None:
            heapq.heappush(self._due[partition], (value["settled_ms"] + self.keep_ms, key))
