"""The inventory agents' logic: splitting orders into per-sku requests, and owning each sku's stock.

``split_order`` turns an OrderPlaced (keyed by order id) into one ReserveStock per line, re-keyed by
sku, so every request for a sku lands on the one partition that owns it. ``handle_stock`` is that
owner: the only writer of a sku's stock. Its guards are the sku's own reservations, so a duplicate
ReserveStock answers what it answered before and a duplicate release or commit changes nothing.

Stock: ``on_hand`` units in the warehouse, ``reserved`` of them held for orders; a reservation is
consumed by CommitStock (both drop) or given back by ReleaseStock (a consumed one goes back on hand).
"""

from __future__ import annotations

from shopflow.streams.runtime import Output, Result, Unexpected, derived_event_id
from shopflow.tables.values import StockState
from shopflow.topologies.catalog import STOCK_REQUESTS, STOCK_RESULTS

ORDER_PLACED = "shopflow.orders.OrderPlaced"
RESERVE = "shopflow.inventory.ReserveStock"
RELEASE = "shopflow.inventory.ReleaseStock"
COMMIT = "shopflow.inventory.CommitStock"
ADJUST = "shopflow.inventory.StockAdjusted"
RESERVED = "shopflow.inventory.StockReserved"
REJECTED = "shopflow.inventory.StockRejected"
RELEASED = "shopflow.inventory.StockReleased"
PRODUCT_UPSERTED = "shopflow.catalog.ProductUpserted"


def split_order(record: str, value: dict) -> list[Output]:
    """OrderPlaced -> ReserveStock per line; every other order event is not the inventory's business."""
    if record != ORDER_PLACED:
        return []
    return [
        Output(STOCK_REQUESTS, RESERVE, {
            "event_id": derived_event_id(value["event_id"], "reserve", line["sku"]),
            "order_id": value["order_id"], "sku": line["sku"], "quantity": line["quantity"],
            "occurred_at": value["occurred_at"],
        })
        for line in value["lines"]
    ]


def stock_for_new_product(record: str, value: dict) -> list[Output]:
    """A sku listed for the first time (ProductUpserted version 1) gets a stock entry of zero units.

    catalog.products has its own partition count, so the inventory cannot write its table from it;
    a zero StockAdjusted, keyed by sku onto stock-requests, lets the sku's owner create the entry.
    """
    if record != PRODUCT_UPSERTED or value["version"] != 1:
        return []
    return [Output(STOCK_REQUESTS, ADJUST, {
        "event_id": derived_event_id(value["event_id"], "listed"), "sku": value["sku"], "delta": 0,
        "reason": "new sku listed in the catalog", "adjusted_by": None, "occurred_at": value["occurred_at"],
    })]


def handle_stock(state: StockState | None, record: str, value: dict, now_ms: int) -> Result:
    event_id = value["event_id"]
    if state is not None and state.seen(event_id):
        return Result(duplicate=True)
    if record == ADJUST:
        return _adjust(state or StockState(sku=value["sku"]), value)
    if state is None and record == RESERVE:
        return Result(outputs=[_answer(REJECTED, value, now_ms, reason="UNKNOWN_SKU", available=0)])
    if state is None:
        state = StockState(sku=value["sku"])

    order_id, qty = value["order_id"], value["quantity"]
    held = state.reservations.get(order_id)
    outputs: list[Output] = []
    if record == RESERVE:
        if held is not None:  # a redelivered request: answer again what was answered
            outputs.append(_repeat(held, state, value, now_ms))
        elif state.available >= qty:
            state.reserved += qty
            state.reservations[order_id] = {"quantity": qty, "status": "RESERVED"}
            outputs.append(_answer(RESERVED, value, now_ms, remaining_on_hand=state.available))
        else:
            state.reservations[order_id] = {"quantity": qty, "status": "REJECTED", "available": state.available}
            outputs.append(_answer(REJECTED, value, now_ms, reason="OUT_OF_STOCK", available=state.available))
    elif record == COMMIT:
        if held is not None and held["status"] == "RESERVED":
            state.reserved -= held["quantity"]
            state.on_hand -= held["quantity"]
            held["status"] = "COMMITTED"
    elif record == RELEASE:
        if held is not None and held["status"] == "RESERVED":
            state.reserved -= held["quantity"]
            held["status"] = "RELEASED"
        elif held is not None and held["status"] == "COMMITTED":
            state.on_hand += held["quantity"]  # cancelled after payment: the units come back
            held["status"] = "RELEASED"
        outputs.append(_answer(RELEASED, value, now_ms))
    else:
        raise Unexpected(f"the inventory agent has no rule for {record}")
    state.remember(event_id)
    return Result(state=state, outputs=outputs)


def _adjust(state: StockState, value: dict) -> Result:
    if state.on_hand + value["delta"] < state.reserved:
        raise Unexpected(
            f"adjusting {state.sku} by {value['delta']} would leave {state.on_hand + value['delta']} on hand "
            f"for {state.reserved} reserved"
        )
    state.on_hand += value["delta"]
    state.remember(value["event_id"])
    return Result(state=state)


def _repeat(held: dict, state: StockState, value: dict, now_ms: int) -> Output:
    if held["status"] == "REJECTED":
        return _answer(REJECTED, value, now_ms, reason="OUT_OF_STOCK", available=held.get("available", 0))
    return _answer(RESERVED, value, now_ms, remaining_on_hand=state.available)


def _answer(record: str, request: dict, now_ms: int, **fields) -> Output:
    return Output(STOCK_RESULTS, record, {
        "event_id": derived_event_id(request["event_id"], record.rsplit(".", 1)[1]),
        "order_id": request["order_id"], "sku": request["sku"], "quantity": request["quantity"],
        **fields, "occurred_at": now_ms,
    })
