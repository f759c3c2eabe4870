"""The catalog (``/v1/products``, ``/v1/categories``): admins write, everyone reads.

Writes go through ``shopflow.catalog.Catalog``, which commits each change with its outbox event in
one transaction (the event reaches ``catalog.products`` through Debezium, then the search index and
the product cache through the indexer). They need the admin role (403 otherwise) and an
``Idempotency-Key``: a retried create, update or delete gets the first response instead of running
again. The repository's refusals become 4xx with its message: ``InvalidInput`` 422 (an unknown
category, ...), ``NotFound`` 404, ``Conflict`` 409 (sku taken, category still in use).

Reads are public: a product through the Redis read cache (``Catalog.get_product``), the category
tree from PostgreSQL. The indexer fences a product's cache entry when its event arrives; a write
through this edge also fences it right after the commit, at the version it just wrote, so the
writer's next read never returns the older cached product while the event is still on its way
(read-your-writes; the fence is versioned, so the indexer's later one changes nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shopflow.api.catalog_converters import (
    category_public,
    category_tree,
    product_public,
    to_product_changes,
    to_product_input,
)
from shopflow.api.catalog_schemas import (
    MAX_CATEGORY_ID,
    CategoryCreate,
    CategoryPublic,
    CategoryTree,
    CategoryUpdate,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
)
from shopflow.api.dependencies import AdminUser, CatalogDep, EdgeDep, IdempotencyKey
from shopflow.api.errors import errors
from shopflow.api.idempotency import fingerprint
from shopflow.catalog import CatalogError
from shopflow.catalog.products import SKU_PATTERN

log = logging.getLogger(__name__)
router = APIRouter(tags=["catalog"])

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="The product's sku.")]
CategoryIdPath = Annotated[int, Path(ge=1, le=MAX_CATEGORY_ID, description="The category's id.")]
_LOCATION = {"Location": {"description": "Where the new resource is read.", "schema": {"type": "string"}}}
_WRITE_ERRORS = errors(400, 401, 403, 404, 409, 413, 422, 429, 503)


class ProductRemoved(BaseModel):
    sku: str
    version: int


def refused(exc: CatalogError) -> NoReturn:
    """The repository's refusal as the HTTP error it names (422, 404 or 409), with its message."""
    raise HTTPException(exc.status, str(exc)) from None


async def command(edge: EdgeDep, admin_id: str, key: str, request: Request, body: Any,
                  run: Callable[[], Awaitable[Response]]) -> Response:
    """Run an admin write once per Idempotency-Key (scoped to the admin), refusals mapped to 4xx."""

    async def handle() -> Response:
        try:
            return await run()
        except CatalogError as exc:
            refused(exc)

    fp = fingerprint(request.method, request.url.path, body)
    return await edge.idempotency.run(admin_id, key, fp, handle)


def product_location(sku: str) -> str:
    return f"/v1/products/{sku}"


# -- products -------------------------------------------------------------------------------------------


@router.post("/v1/products", status_code=status.HTTP_201_CREATED, response_model=ProductPublic,
             responses={201: {"headers": _LOCATION}, **_WRITE_ERRORS})
async def create_product(body: ProductCreate, request: Request, admin: AdminUser, edge: EdgeDep,
                         catalog: CatalogDep, idempotency_key: IdempotencyKey) -> Response:
    """Create a product (a deleted sku comes back with its version continuing); 409 if the sku is live."""

    async def run() -> Response:
        product = await catalog.create_product(to_product_input(body))
        await catalog.fence_cache(product.sku, product.version)  # a re-created sku may have a cached past
        where = product_location(product.sku)
        return JSONResponse(product_public(product).model_dump(mode="json"), status.HTTP_201_CREATED,
                            headers={"Location": where})

    return await command(edge, admin.user_id, idempotency_key, request, body.model_dump(mode="json"), run)


@router.patch("/v1/products/{sku}", response_model=ProductPublic, responses=_WRITE_ERRORS)
async def update_product(sku: SkuPath, body: ProductUpdate, request: Request, admin: AdminUser, edge: EdgeDep,
                         catalog: CatalogDep, idempotency_key: IdempotencyKey) -> Response:
    """Change some fields of a product; those left out keep their value. A change that changes
    nothing returns the product as it is (same version) and announces nothing."""

    async def run() -> Response:
        product = await catalog.update_product(sku, to_product_changes(body))
        await catalog.fence_cache(sku, product.version)
        return JSONResponse(product_public(product).model_dump(mode="json"))

    sent = body.model_dump(mode="json", exclude_unset=True)
    return await command(edge, admin.user_id, idempotency_key, request, sent, run)


@router.delete("/v1/products/{sku}", response_model=ProductRemoved, responses=_WRITE_ERRORS)
async def delete_product(sku: SkuPath, request: Request, admin: AdminUser, edge: EdgeDep, catalog: CatalogDep,
                         idempotency_key: IdempotencyKey) -> Response:
    """Delete a product (it leaves search; its sku may be created again later)."""

    async def run() -> Response:
        version = await catalog.delete_product(sku)
        await catalog.fence_cache(sku, version)
        return JSONResponse(ProductRemoved(sku=sku, version=version).model_dump(mode="json"))

    return await command(edge, admin.user_id, idempotency_key, request, None, run)


@router.get("/v1/products/{sku}", response_model=ProductPublic, responses=errors(404, 422, 503))
async def get_product(sku: SkuPath, catalog: CatalogDep) -> ProductPublic:
    """One product (inactive ones too, with ``active: false``), from the read cache."""
    product = await catalog.get_product(sku)
    if product is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no product {sku}")
    return product_public(product)


# -- categories -----------------------------------------------------------------------------------------


@router.post("/v1/categories", status_code=status.HTTP_201_CREATED, response_model=CategoryPublic,
             responses=_WRITE_ERRORS)
async def create_category(body: CategoryCreate, request: Request, admin: AdminUser, edge: EdgeDep,
                          catalog: CatalogDep, idempotency_key: IdempotencyKey) -> Response:
    """Create a category under ``parent_id`` (or a root); 409 if its path exists."""

    async def run() -> Response:
        category = await catalog.create_category(body.slug, body.name, body.parent_id)
        return JSONResponse(category_public(category).model_dump(mode="json"), status.HTTP_201_CREATED)

    return await command(edge, admin.user_id, idempotency_key, request, body.model_dump(mode="json"), run)


@router.patch("/v1/categories/{category_id}", response_model=CategoryPublic, responses=_WRITE_ERRORS)
async def update_category(category_id: CategoryIdPath, body: CategoryUpdate, request: Request, admin: AdminUser,
                          edge: EdgeDep, catalog: CatalogDep, idempotency_key: IdempotencyKey) -> Response:
    """Rename and/or move a category; a new path is given to its subtree and its products re-announced."""
    sent = body.model_dump(mode="json", exclude_unset=True)

    async def run() -> Response:
        # parent_id only when sent: left out keeps the parent, null makes the category a root.
        moved: dict[str, Any] = {"parent_id": body.parent_id} if "parent_id" in sent else {}
        category = await catalog.update_category(category_id, name=body.name, slug=body.slug, **moved)
        return JSONResponse(category_public(category).model_dump(mode="json"))

    return await command(edge, admin.user_id, idempotency_key, request, sent, run)


@router.delete("/v1/categories/{category_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=_WRITE_ERRORS)
async def delete_category(category_id: CategoryIdPath, request: Request, admin: AdminUser, edge: EdgeDep,
                          catalog: CatalogDep, idempotency_key: IdempotencyKey) -> Response:
    """Delete a category with no subcategories and no products (409 otherwise)."""

    async def run() -> Response:
        await catalog.delete_category(category_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return await command(edge, admin.user_id, idempotency_key, request, None, run)


@router.get("/v1/categories", response_model=CategoryTree, responses=errors(503))
async def categories(catalog: CatalogDep) -> CategoryTree:
    """The whole category tree: roots, each with its children, in path order."""
    return category_tree(await catalog.list_categories())
