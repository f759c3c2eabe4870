"""The edge's catalog and search types: products, categories, search pages and suggestions over HTTP.

Kept apart from the Avro records (``ProductUpserted`` ...) and from the catalog's dataclasses;
``api.catalog_converters`` maps between them field by field. The field types of products and
categories are the catalog's own rules (``shopflow.catalog.products.Rule``): the same checks the
repository runs, so a bad field is refused here (422, one entry per field) with the words the
repository would use, and the OpenAPI document declares the same limits. Input types forbid unknown
fields, as in ``api.schemas``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, model_validator

from shopflow.api.schemas import Money, _In, whole_number
from shopflow.catalog.categories import MAX_CATEGORY_ID, SLUG_SCHEMA, check_slug
from shopflow.catalog.products import (
    ACTIVE_SCHEMA,
    ATTRIBUTES_SCHEMA,
    BRAND_SCHEMA,
    CATEGORY_PATH_SCHEMA,
    CURRENCY_SCHEMA,
    DESCRIPTION_SCHEMA,
    MAX_PRICE_MINOR,
    NAME_SCHEMA,
    PRICE_MINOR_SCHEMA,
    SKU_SCHEMA,
    Rule,
    check_active,
    check_attributes,
    check_brand,
    check_category_path,
    check_currency,
    check_description,
    check_name,
    check_price_minor,
    check_sku,
)

__all__ = ["MAX_CATEGORY_ID", "MAX_PRICE_MINOR"]  # the search and catalog routes' bounds

Sku = Annotated[str, Rule(check_sku, "sku", SKU_SCHEMA)]
ProductName = Annotated[str, Rule(check_name, "name", NAME_SCHEMA)]
Description = Annotated[str, Rule(check_description, "description", DESCRIPTION_SCHEMA)]
Brand = Annotated[str, Rule(check_brand, "brand", BRAND_SCHEMA)]
CategoryPath = Annotated[str, Rule(check_category_path, "category", CATEGORY_PATH_SCHEMA)]
AmountMinor = Annotated[int, Rule(check_price_minor, "amount_minor", PRICE_MINOR_SCHEMA),
                        BeforeValidator(whole_number)]
Currency = Annotated[str, Rule(check_currency, "currency", CURRENCY_SCHEMA)]
Attributes = Annotated[dict[str, str], Rule(check_attributes, "attributes", ATTRIBUTES_SCHEMA)]
Active = Annotated[bool, Rule(check_active, "active", ACTIVE_SCHEMA)]
Slug = Annotated[str, Rule(check_slug, "slug", SLUG_SCHEMA)]
CategoryName = Annotated[str, Rule(check_name, "name", NAME_SCHEMA)]
CategoryId = Annotated[StrictInt, Field(ge=1, le=MAX_CATEGORY_ID), BeforeValidator(whole_number)]


# -- products -------------------------------------------------------------------------------------------


class PriceIn(_In):
    amount_minor: AmountMinor
    currency: Currency


class ProductCreate(_In):
    sku: Sku
    name: ProductName
    description: Description = ""
    brand: Brand | None = None
    category: CategoryPath | None = None
    price: PriceIn
    attributes: Attributes = Field(default_factory=dict)
    active: Active = True


def _patch_document(schema: dict[str, Any], model: type[Any]) -> None:
    """What ``_Patch`` refuses, the OpenAPI document says: an empty body, null outside ``NULLABLE``."""
    schema["minProperties"] = 1
    for name, prop in schema.get("properties", {}).items():
        if name in model.NULLABLE or not isinstance(prop.get("anyOf"), list):
            continue
        kept = [branch for branch in prop.pop("anyOf") if branch != {"type": "null"}]
        prop.pop("default", None)
        prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})


class _Patch(_In):
    """A PATCH body: the fields sent are changed, those left out keep their value. Only the fields named in
    ``NULLABLE`` may be sent as null (cleared); an empty body changes nothing and is refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_document)
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _some_change_and_no_null_for_required(self) -> Self:
        nulled = sorted(f for f in self.model_fields_set - self.NULLABLE if getattr(self, f) is None)
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null; leave a field out to keep its value")
        if not self.model_fields_set:
            raise ValueError("nothing to change: send at least one field")
        return self


class ProductUpdate(_Patch):
    """The fields to change; those left out keep their value. ``brand`` and ``category`` may be null
    (cleared); the others may not."""

    NULLABLE = frozenset({"brand", "category"})

    name: ProductName | None = None
    description: Description | None = None
    brand: Brand | None = None
    category: CategoryPath | None = None
    price: PriceIn | None = None
    attributes: Attributes | None = None
    active: Active | None = None


class ProductImagePublic(BaseModel):
    id: str
    links: dict[str, str] = Field(description="Edge paths by thumbnail size (longest side in pixels) and "
                                              "'original'; each redirects to a short-lived presigned GET.")


class ProductDetailsPublic(BaseModel):
    """The fields a product and a search hit share."""

    sku: str
    name: str
    description: str
    brand: str | None
    category: str | None
    price: Money
    attributes: dict[str, str]
    active: bool
    images: list[ProductImagePublic] = Field(default_factory=list, description="In display order.")


class ProductPublic(ProductDetailsPublic):
    version: int = Field(description="Increases with every change of this product.")
    updated_at: datetime


# -- categories -----------------------------------------------------------------------------------------


class CategoryCreate(_In):
    slug: Slug
    name: CategoryName
    parent_id: CategoryId | None = Field(default=None, description="The parent's id; none for a root category.")


class CategoryUpdate(_Patch):
    """Rename and/or move; fields left out are kept. ``parent_id: null`` makes it a root category."""

    NULLABLE = frozenset({"parent_id"})

    slug: Slug | None = None
    name: CategoryName | None = None
    parent_id: CategoryId | None = None


class CategoryPublic(BaseModel):
    id: int
    parent_id: int | None
    slug: str
    name: str
    path: str = Field(description="Slugs from the root joined by '/'; what products and search filters use.")


class CategoryNode(BaseModel):
    id: int
    slug: str
    name: str
    path: str
    children: list[CategoryNode] = Field(default_factory=list)


class CategoryTree(BaseModel):
    roots: list[CategoryNode]


# -- search ---------------------------------------------------------------------------------------------


class SearchHitPublic(ProductDetailsPublic):
    in_stock: bool
    score: float | None = Field(description="Relevance; null when sorted by something else.")


class FacetValue(BaseModel):
    value: str
    count: int


class Facets(BaseModel):
    brand: list[FacetValue] = Field(description="Counted under every filter but the brand one.")
    category: list[FacetValue] = Field(description="Counted under every filter but the category one.")


class SearchPage(BaseModel):
    hits: list[SearchHitPublic]
    total: int = Field(description="How many products match in all.")
    facets: Facets
    next_cursor: str | None = Field(description="Pass as ?cursor= with the same query for the next page; "
                                                "null on the last page.")


class SuggestionPublic(BaseModel):
    sku: str
    name: str


class Suggestions(BaseModel):
    suggestions: list[SuggestionPublic]
