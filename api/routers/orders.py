"""Orders (``/v1/orders``): place and cancel (commands to ``order-commands``), read mine.

A command is checked completely before anything is produced (body, catalog prices, ownership,
state), so a 4xx never leaves a record on a topic. It is answered 202 with ``Location`` only
after the broker has it (acks=all); placing goes through ``api.ordering``, as cart checkout does.
Reads come from the ``orders_view`` read model; ``?wait=`` gives read-your-writes (see
``api.orders_store``). Another customer's order is 404,
exactly as a missing one, so order ids cannot be probed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from shopflow.api import ordering
from shopflow.api.converters import order_from_row, to_cancel_order
from shopflow.api.dependencies import CurrentUser, Edge, EdgeDep, IdempotencyKey
from shopflow.api.errors import errors
from shopflow.api.idempotency import Outcome, fingerprint
from shopflow.api.ordering import LOCATION_HEADER, NewOrder, location
from shopflow.api.orders_store import BadCursor, Cursor, Marker, fetch_order, list_orders, reached, wait_for_order
from shopflow.api.schemas import MAX_WAIT_S, CancelAccepted, OrderAccepted, OrderCreate, OrderPage, OrderPublic
from shopflow.api.security import Claims, Permission
from shopflow.topologies.orders import FINAL_ORDER_STATUSES, RANK_PLACED

router = APIRouter(prefix="/v1/orders", tags=["orders"])

OrderId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,100}$", description="The order's id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Orders per page.")]
CursorParam = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page.")]


def not_found(order_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no order {order_id}")


def parse_cursor(text: str | None) -> Cursor | None:
    try:
        return Cursor.decode(text) if text else None
    except BadCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None


async def _visible(edge: Edge, order_id: str, user: Claims) -> tuple[asyncpg.Record | None, Marker | None]:
    """The order's row and marker when the caller may see it (owner or admin); 404 otherwise."""
    row = await fetch_order(edge.pool, order_id)
    marker = await edge.markers.get(order_id)
    owner = row["user_id"] if row is not None else (marker.user_id if marker is not None else None)
    if owner is None or (owner != user.user_id and not user.can(Permission.SHOP_ADMIN)):
        raise not_found(order_id)
    return row, marker


@router.post(
    "", status_code=status.HTTP_202_ACCEPTED, response_model=OrderAccepted,
    responses={202: {"headers": LOCATION_HEADER}, **errors(400, 401, 409, 413, 422, 429, 503)},
)
async def place_order(body: OrderCreate, request: Request, user: CurrentUser, edge: EdgeDep,
                      idempotency_key: IdempotencyKey) -> Response:
    """Place an order from lines; prices come from the catalog. Follow it at the Location."""

    async def handle() -> Outcome:
        return await ordering.place_order(edge, NewOrder(
            order_id=str(uuid.uuid4()), user_id=user.user_id, lines=body.lines, payment_token=body.payment_token,
            shipping_address=body.shipping_address, occurred_at=datetime.now(UTC)))

    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    return await edge.idempotency.run(user.user_id, idempotency_key, fp, handle)


@router.get("", response_model=OrderPage, responses=errors(400, 401, 422, 429, 503))
async def my_orders(user: CurrentUser, edge: EdgeDep, cursor: CursorParam = None, limit: Limit = 20) -> OrderPage:
    """My orders, newest first, a page at a time (orders the saga has not reported on yet are not listed)."""
    rows, after = await list_orders(edge.pool, user_id=user.user_id, cursor=parse_cursor(cursor), limit=limit)
    return OrderPage(items=[order_from_row(r) for r in rows], next_cursor=after.encode() if after else None)


@router.get("/{order_id}", response_model=OrderPublic, responses=errors(401, 404, 422, 429, 503))
async def get_order(
    order_id: OrderId, user: CurrentUser, edge: EdgeDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description=(
        "Seconds to wait (at most 20) until the order reflects the caller's last accepted command "
        "(placed: PENDING or later; cancelled: CANCELLED/REFUNDED) or a final state."))] = 0,
) -> OrderPublic:
    """One order. ACCEPTED means the edge took it and the saga has not reported on it yet.

    A customer reads only their own orders (another customer's is 404, as a missing one); an admin reads
    any customer's order here."""
    row, marker = await _visible(edge, order_id, user)
    min_rank = marker.min_rank if marker is not None else RANK_PLACED
    if wait > 0 and not reached(row, min_rank):
        row = await wait_for_order(edge.pool, edge.notifications, order_id, min_rank, wait)
    if row is not None:
        return order_from_row(row)
    if marker is not None and marker.accepted is not None:
        return marker.accepted
    raise not_found(order_id)


@router.post(
    "/{order_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=CancelAccepted,
    responses={202: {"headers": LOCATION_HEADER}, **errors(401, 404, 409, 413, 422, 429, 503)},
)
async def cancel_order(order_id: OrderId, request: Request, user: CurrentUser, edge: EdgeDep,
                       idempotency_key: IdempotencyKey) -> Response:
    """Ask to cancel an order (refunded if already paid). Follow it at the Location with ?wait=.

    A customer cancels only their own orders (another customer's is 404); an admin may cancel any order."""

    async def handle() -> Outcome:
        row, marker = await _visible(edge, order_id, user)
        if row is not None and row["status"] in FINAL_ORDER_STATUSES:
            raise HTTPException(status.HTTP_409_CONFLICT, f"order {order_id} is already {row['status']}")
        command = to_cancel_order(order_id=order_id, requested_by=user.user_id, occurred_at=datetime.now(UTC))
        await edge.producer.send(edge.topics.order_commands, order_id, command)
        owner = row["user_id"] if row is not None else marker.user_id  # type: ignore[union-attr]
        where = location(order_id)
        body = CancelAccepted(order_id=order_id, location=where, event_id=command.event_id)
        response = JSONResponse(body.model_dump(mode="json"), status.HTTP_202_ACCEPTED, headers={"Location": where})
        return Outcome(response, (edge.markers.cancel_write(order_id, owner),))

    fp = fingerprint("POST", request.url.path, None)
    return await edge.idempotency.run(user.user_id, idempotency_key, fp, handle)
