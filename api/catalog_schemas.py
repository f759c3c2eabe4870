"""The edge's catalog and search types: products, categories, search pages and suggestions over HTTP.

Kept apart from the Avro records (``ProductUpserted`` ...) and from ``shopflow.catalog``'s and
``shopflow.search``'s dataclasses; ``api.catalog_converters`` maps between them field by field.
Bounds here mirror ``shopflow.catalog.validate_product`` so most bad input is refused (422, one
entry per field) before the repository is asked; the repository still checks everything itself.
Input types forbid unknown fields, as in ``api.schemas``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, Field, StrictBool, StrictInt, StringConstraints, model_validator

from shopflow.api.schemas import Money, ShortText, Sku, _In, _text
from shopflow.catalog import MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTE_VALUE, MAX_ATTRIBUTES, MAX_DESCRIPTION, MAX_NAME
from shopflow.catalog import MAX_PRICE_MINOR as _MAX_PRICE

MAX_PRICE_MINOR = _MAX_PRICE
MAX_CATEGORY_ID = 2**63 - 1  # bigint identity

ProductName = _text(max_length=MAX_NAME)
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_DESCRIPTION)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=100)]
CategoryPath = Annotated[str, StringConstraints(
    pattern=r"^[a-z0-9]+(-[a-z0-9]+)*(/[a-z0-9]+(-[a-z0-9]+)*)*$", max_length=1000)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
CategoryId = Annotated[StrictInt, Field(ge=1, le=MAX_CATEGORY_ID)]
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_KEY, pattern=r"\S")]
AttributeValue = Annotated[str, StringConstraints(max_length=MAX_ATTRIBUTE_VALUE)]
Attributes = Annotated[dict[AttributeName, AttributeValue], Field(max_length=MAX_ATTRIBUTES)]


# -- products -------------------------------------------------------------------------------------------


class PriceIn(_In):
    amount_minor: Annotated[StrictInt, Field(ge=0, le=MAX_PRICE_MINOR)] = Field(
        description="Integer count of the currency's minor unit (1999 with EUR = 19.99 EUR).")
    currency: Currency = Field(description="ISO 4217 code, upper case.")


class ProductCreate(_In):
    sku: Sku
    name: ProductName
    description: Description = ""
    brand: ShortText | None = None
    category: CategoryPath | None = Field(default=None, description="A category path, e.g. audio/headphones.")
    price: PriceIn
    attributes: Attributes = Field(default_factory=dict)
    active: StrictBool = True


class _Patch(_In):
    """A PATCH body: the fields sent are changed, those left out keep their value. Only the fields named in
    ``NULLABLE`` may be sent as null (cleared); an empty body changes nothing and is refused."""

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
    brand: ShortText | None = None
    category: CategoryPath | None = None
    price: PriceIn | None = None
    attributes: Attributes | None = None
    active: StrictBool | None = None


class ProductPublic(BaseModel):
    sku: str
    name: str
    description: str
    brand: str | None
    category: str | None
    price: Money
    attributes: dict[str, str]
    active: bool
    version: int = Field(description="Increases with every change of this product.")
    updated_at: datetime


# -- categories -----------------------------------------------------------------------------------------


class CategoryCreate(_In):
    slug: Slug
    name: ProductName
    parent_id: CategoryId | None = Field(default=None, description="The parent's id; none for a root category.")


class CategoryUpdate(_Patch):
    """Rename and/or move; fields left out are kept. ``parent_id: null`` makes it a root category."""

    NULLABLE = frozenset({"parent_id"})

    slug: Slug | None = None
    name: ProductName | None = None
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


class SearchHitPublic(BaseModel):
    sku: str
    name: str
    description: str
    brand: str | None
    category: str | None
    price: Money
    attributes: dict[str, str]
    active: bool
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
