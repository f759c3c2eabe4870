"""Admin routes (``/v1/admin``): every order, stock adjustments. All need the admin role (403 otherwise)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from shopflow.api.converters import order_from_row, to_stock_adjusted
from shopflow.api.dependencies import AdminUser, Edge, EdgeDep, IdempotencyKey
from shopflow.api.errors import errors
from shopflow.api.idempotency import fingerprint
from shopflow.api.orders_store import CatalogUnavailable, list_orders, sku_exists
from shopflow.api.routers.orders import CursorParam, Limit, parse_cursor
from shopflow.api.schemas import OrderPage, StockAdjust, StockAdjustAccepted
from shopflow.catalog.products import SKU_PATTERN

router = APIRouter(prefix="/v1/admin", tags=["admin"])

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="The sku to adjust.")]


async def require_known_sku(edge: Edge, sku: str) -> None:
    """An admin's stock command names a catalog sku: 422 if it is not one, 503 if the catalog cannot say."""
    async with edge.pool.acquire() as conn:
        try:
            known = await sku_exists(conn, sku)
        except CatalogUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), {"Retry-After": "5"}) from None
    if not known:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown sku: {sku}")


@router.get("/orders", response_model=OrderPage, responses=errors(400, 401, 403, 422, 429, 503))
async def all_orders(
    _admin: AdminUser, edge: EdgeDep, cursor: CursorParam = None, limit: Limit = 20,
    user_id: Annotated[str | None, Query(max_length=100, description="Only this customer's orders.")] = None,
) -> OrderPage:
    """Every customer's orders, newest first."""
    rows, after = await list_orders(edge.pool, user_id=user_id, cursor=parse_cursor(cursor), limit=limit)
    return OrderPage(items=[order_from_row(r) for r in rows], next_cursor=after.encode() if after else None)


@router.post("/stock/{sku}/adjust", status_code=status.HTTP_202_ACCEPTED, response_model=StockAdjustAccepted,
             responses=errors(400, 401, 403, 413, 422, 429, 503))
async def adjust_stock(sku: SkuPath, body: StockAdjust, request: Request, admin: AdminUser, edge: EdgeDep,
                       idempotency_key: IdempotencyKey) -> Response:
    """Correct a sku's on-hand stock (StockAdjusted to the inventory agent that owns the sku)."""

    async def handle() -> Response:
        await require_known_sku(edge, sku)
        event = to_stock_adjusted(sku=sku, body=body, adjusted_by=admin.user_id, occurred_at=datetime.now(UTC))
        await edge.producer.send(edge.topics.stock_requests, sku, event)
        accepted = StockAdjustAccepted(event_id=event.event_id, sku=sku, delta=body.delta)
        return JSONResponse(accepted.model_dump(mode="json"), status.HTTP_202_ACCEPTED)

    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    return await edge.idempotency.run(admin.user_id, idempotency_key, fp, handle)
