"""Catalog input validation, without servers: what the edge turns into a 422 naming the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shopflow.catalog import (
    UPDATABLE,
    CatalogError,
    Conflict,
    InvalidInput,
    NotFound,
    Product,
    ProductInput,
    validate_category,
    validate_product,
)


def good(**kw) -> ProductInput:
    base = dict(sku="SKU-1", name="Desk lamp", price_minor=1999, currency="EUR")
    return ProductInput(**{**base, **kw})


def test_a_good_product_is_trimmed_and_kept():
    p = validate_product(good(name="  Desk lamp ", brand=" Lumo ", category="home/lighting",
                              attributes={"colour": "white"}))
    assert (p.name, p.brand, p.category, p.attributes) == ("Desk lamp", "Lumo", "home/lighting", {"colour": "white"})


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"sku": ""}, "sku", "must be 1-64"),
    ({"sku": "has space"}, "sku", "must be 1-64"),
    ({"sku": "x" * 65}, "sku", "must be 1-64"),
    ({"name": "   "}, "name", "must not be empty"),
    ({"name": "n" * 301}, "name", "at most 300"),
    ({"name": 42}, "name", "must be a string"),
    ({"price_minor": -1}, "price_minor", "must not be negative"),
    ({"price_minor": 19.99}, "price_minor", "integer count of minor units"),
    ({"price_minor": True}, "price_minor", "integer count of minor units"),
    ({"price_minor": 2**63}, "price_minor", "out of range"),
    ({"currency": "EURO"}, "currency", "not an ISO 4217 code"),
    ({"currency": "XYZ"}, "currency", "not an ISO 4217 code"),
    ({"currency": "eur"}, "currency", "upper case"),
    ({"attributes": {"colour": 3}}, "attributes", "must be a string"),
    ({"attributes": {"": "x"}}, "attributes", "attribute name"),
    ({"attributes": {f"k{i}": "v" for i in range(101)}}, "attributes", "at most 100"),
    ({"attributes": ["colour"]}, "attributes", "must be an object"),
    ({"active": "yes"}, "active", "true or false"),
    ({"description": None}, "description", "must be a string"),
    ({"name": "Desk\x00lamp"}, "name", "control characters"),
    ({"brand": " "}, "brand", "must not be empty"),
    # A category path is what the categories make it: slugs joined by '/', nothing around them.
    ({"category": "/home/lighting/"}, "category", "must be a category path"),
    ({"category": "Home"}, "category", "must be a category path"),
])
def test_bad_products_are_refused_naming_the_field(changes, field, message):
    with pytest.raises(InvalidInput, match=message) as err:
        validate_product(good(**changes))
    assert err.value.field == field
    assert err.value.status == 422


@pytest.mark.parametrize(("slug", "name", "message"), [
    ("Audio", "Audio", "lower-case"),
    ("audio/headphones", "Audio", "lower-case"),
    ("-audio", "Audio", "lower-case"),
    ("audio", " ", "must not be empty"),
])
def test_bad_categories_are_refused(slug, name, message):
    with pytest.raises(InvalidInput, match=message):
        validate_category(slug, name)


def test_categories_slugs_may_have_dashes():
    assert validate_category("smart-home", " Smart home ") == ("smart-home", "Smart home")


def test_every_error_maps_to_a_4xx():
    assert [e.status for e in (InvalidInput("x"), NotFound("x"), Conflict("x"))] == [422, 404, 409]
    assert all(issubclass(e, CatalogError) for e in (InvalidInput, NotFound, Conflict))


def test_the_sku_is_not_updatable():
    assert "sku" not in UPDATABLE and {"name", "price_minor", "category", "active"} <= UPDATABLE


def test_a_product_survives_its_cache_encoding():
    p = Product(sku="S", name="n", description="", brand=None, category="a/b", price_minor=1, currency="EUR",
                attributes={"k": "v"}, active=True, version=7, updated_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert Product.from_json(p.to_json()) == p


@pytest.mark.parametrize(("field", "value"), [
    ("name", "n" * 301), ("sku", "has space"), ("currency", "eur"), ("category", "Home/"), ("active", "yes"),
])
def test_the_edge_refuses_a_bad_field_with_the_repository_words(field, value):
    from pydantic import ValidationError

    from shopflow.api.catalog_schemas import ProductCreate

    body = {"sku": "SKU-1", "name": "Desk lamp", "price": {"amount_minor": 1999, "currency": "EUR"}}
    if field == "currency":
        body["price"] = {**body["price"], "currency": value}
    else:
        body[field] = value
    with pytest.raises(InvalidInput) as repository:
        validate_product(good(**{field: value}))
    with pytest.raises(ValidationError) as edge:
        ProductCreate.model_validate(body)
    assert [e["msg"] for e in edge.value.errors()] == [str(repository.value)]
