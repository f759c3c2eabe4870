"""The wishlist (``/v1/wishlist``): skus a customer keeps for later, in PostgreSQL (``wishlist_items``).

Not a command to the streams: a direct, parameterised write in the edge's database. PUT and DELETE
are idempotent by nature (putting a sku twice keeps one entry with its first ``added_at``), so no
Idempotency-Key is needed. Only catalog skus that are sold can be added (422 otherwise); a product
that leaves the catalog later stays listed, shown unavailable. At most ``MAX_WISHLIST`` entries (409).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.responses import Response

from shopflow.api.cart_converters import wishlist_item
from shopflow.api.cart_schemas import MAX_WISHLIST, Wishlist, WishlistItem
from shopflow.api.carts_store import wishlist, wishlist_delete, wishlist_put
from shopflow.api.dependencies import CurrentUser, EdgeDep
from shopflow.api.errors import errors
from shopflow.api.orders_store import CatalogUnavailable
from shopflow.catalog import reader as catalog_reader
from shopflow.catalog.products import SKU_PATTERN

router = APIRouter(prefix="/v1/wishlist", tags=["wishlist"])

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="The product's sku.")]


def _catalog_down(exc: CatalogUnavailable) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), {"Retry-After": "5"})


@router.get("", response_model=Wishlist, responses=errors(401, 429, 503))
async def my_wishlist(user: CurrentUser, edge: EdgeDep) -> Wishlist:
    """My wishlist, newest first, with today's names and prices."""
    async with edge.pool.acquire() as conn:
        rows = await wishlist(conn, user.user_id, MAX_WISHLIST)
    return Wishlist(items=[wishlist_item(r) for r in rows])


@router.put("/{sku}", response_model=WishlistItem, responses=errors(401, 409, 422, 429, 503))
async def keep(sku: SkuPath, user: CurrentUser, edge: EdgeDep) -> WishlistItem:
    """Put a sku on my wishlist (already there: kept as it was)."""
    async with edge.pool.acquire() as conn:
        try:
            problem = await catalog_reader.sellable(edge.prices, sku)
        except CatalogUnavailable as exc:
            raise _catalog_down(exc) from None
        if problem is not None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)
        row = await wishlist_put(conn, user.user_id, sku, MAX_WISHLIST)
    if row is None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"your wishlist is full ({MAX_WISHLIST} skus); remove one before adding another")
    return wishlist_item(row)


@router.delete("/{sku}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses=errors(401, 404, 422, 429, 503))
async def forget(sku: SkuPath, user: CurrentUser, edge: EdgeDep) -> Response:
    """Take a sku off my wishlist."""
    async with edge.pool.acquire() as conn:
        removed = await wishlist_delete(conn, user.user_id, sku)
    if not removed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"sku {sku} is not on your wishlist")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
