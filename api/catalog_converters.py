"""Explicit conversions between the edge's catalog and search types (``api.catalog_schemas``) and the
catalog's dataclasses (``shopflow.catalog``, ``shopflow.catalog.search``).

Field by field, as in ``api.converters``: nothing is copied by matching names, so a renamed field on
either side fails here and in ``tests/api/test_catalog_routes.py`` rather than in a client. Prices
are ``{amount_minor, currency}`` on the HTTP side and ``price_minor`` + ``currency`` in the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shopflow.api.catalog_schemas import (
    CategoryNode,
    CategoryPublic,
    CategoryTree,
    Facets,
    FacetValue,
    ProductCreate,
    ProductImagePublic,
    ProductPublic,
    ProductUpdate,
    SearchHitPublic,
    SearchPage,
    SuggestionPublic,
    Suggestions,
)
from shopflow.api.schemas import Money
from shopflow.catalog import Category, Product, ProductInput
from shopflow.catalog.products import ProductDetails
from shopflow.catalog.search import SearchHit, SearchResult, Suggestion
from shopflow.images import image_links

# -- to the catalog -------------------------------------------------------------------------------------


def to_product_input(body: ProductCreate) -> ProductInput:
    return ProductInput(sku=body.sku, name=body.name, description=body.description, brand=body.brand,
                        category=body.category, price_minor=body.price.amount_minor, currency=body.price.currency,
                        attributes=dict(body.attributes), active=body.active)


def to_product_changes(body: ProductUpdate) -> dict[str, Any]:
    """The ``update_product`` changes: only the fields the client sent (null clears brand or category)."""
    sent = body.model_fields_set
    changes: dict[str, Any] = {}
    if "name" in sent:
        changes["name"] = body.name
    if "description" in sent:
        changes["description"] = body.description
    if "brand" in sent:
        changes["brand"] = body.brand
    if "category" in sent:
        changes["category"] = body.category
    if "price" in sent and body.price is not None:
        changes["price_minor"] = body.price.amount_minor
        changes["currency"] = body.price.currency
    if "attributes" in sent and body.attributes is not None:
        changes["attributes"] = dict(body.attributes)
    if "active" in sent:
        changes["active"] = body.active
    return changes


# -- from the catalog -----------------------------------------------------------------------------------


def product_public(p: Product) -> ProductPublic:
    return ProductPublic(sku=p.sku, name=p.name, description=p.description, brand=p.brand, category=p.category,
                         price=Money(amount_minor=p.price_minor, currency=p.currency),
                         attributes=dict(p.attributes), active=p.active, images=images_public(p),
                         version=p.version, updated_at=p.updated_at)


def images_public(p: ProductDetails) -> list[ProductImagePublic]:
    return [ProductImagePublic(id=image_id, links=image_links(p.sku, image_id)) for image_id in p.images]


def category_public(c: Category) -> CategoryPublic:
    return CategoryPublic(id=c.id, parent_id=c.parent_id, slug=c.slug, name=c.name, path=c.path)


def category_tree(categories: Sequence[Category]) -> CategoryTree:
    """Nest a flat list (any order) by ``parent_id``; siblings keep the list's order (path order)."""
    nodes = {c.id: CategoryNode(id=c.id, slug=c.slug, name=c.name, path=c.path) for c in categories}
    roots: list[CategoryNode] = []
    for c in categories:
        parent = nodes.get(c.parent_id) if c.parent_id is not None else None
        (parent.children if parent is not None else roots).append(nodes[c.id])
    return CategoryTree(roots=roots)


# -- from search ----------------------------------------------------------------------------------------


def hit_public(h: SearchHit) -> SearchHitPublic:
    return SearchHitPublic(sku=h.sku, name=h.name, description=h.description, brand=h.brand, category=h.category,
                           price=Money(amount_minor=h.price_minor, currency=h.currency),
                           attributes=dict(h.attributes), active=h.active, images=images_public(h),
                           in_stock=h.in_stock, score=h.score)


def search_page(result: SearchResult) -> SearchPage:
    def facet(name: str) -> list[FacetValue]:
        return [FacetValue(value=f.value, count=f.count) for f in result.facets.get(name, [])]

    return SearchPage(hits=[hit_public(h) for h in result.hits], total=result.total,
                      facets=Facets(brand=facet("brand"), category=facet("category")),
                      next_cursor=result.next_cursor)


def suggestions_public(suggestions: Sequence[Suggestion]) -> Suggestions:
    return Suggestions(suggestions=[SuggestionPublic(sku=s.sku, name=s.name) for s in suggestions])
