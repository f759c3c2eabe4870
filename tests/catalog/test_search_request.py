"""Search request building and the opaque cursor, without servers."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from shopflow.catalog.search import InvalidQuery, SearchQuery, Sort, build_request, decode_cursor, encode_cursor
from shopflow.catalog.search_index import product_document, suggest_inputs
from shopflow.schemas.catalog import ProductUpserted
from shopflow.schemas.records import Money


def test_a_cursor_round_trips_and_is_url_safe():
    q = SearchQuery(text="lamp", brands=("Lumo",), sort=Sort.PRICE_ASC)
    cursor = encode_cursor(q, [1999, "SKU-/+?"])
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    next_page = SearchQuery(text="lamp", brands=("Lumo",), sort=Sort.PRICE_ASC, cursor=cursor)
    assert decode_cursor(next_page) == [1999, "SKU-/+?"]


def test_a_cursor_keeps_a_float_score_exactly():
    q = SearchQuery(text="lamp")
    after = [0.47859406, "SKU-1"]
    assert decode_cursor(SearchQuery(text="lamp", cursor=encode_cursor(q, after))) == after


def test_the_page_size_is_not_part_of_the_query_a_cursor_belongs_to():
    cursor = encode_cursor(SearchQuery(text="lamp", size=10), [1.0, "A"])
    assert decode_cursor(SearchQuery(text="lamp", size=50, cursor=cursor)) == [1.0, "A"]


@pytest.mark.parametrize("other", [
    SearchQuery(text="lamps"), SearchQuery(text="lamp", sort=Sort.NEWEST), SearchQuery(text="lamp", in_stock=True),
    SearchQuery(text="lamp", category="home"), SearchQuery(text="lamp", price_max=10),
])
def test_a_cursor_is_refused_for_another_query(other):
    cursor = encode_cursor(SearchQuery(text="lamp"), [1.0, "A"])
    with pytest.raises(InvalidQuery, match="another query"):
        decode_cursor(SearchQuery(**{**{f: getattr(other, f) for f in other.__dataclass_fields__}, "cursor": cursor}))


def _b64(doc) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "%%%", "bm90IGpzb24", _b64([1, 2]), _b64({"v": 2, "after": [1, "a"]}), _b64({"v": 1, "after": [1]}),
    _b64({"v": 1, "after": [{"x": 1}, "a"]}), _b64({"v": 1, "after": [True, "a"]}),
])
def test_a_forged_or_damaged_cursor_is_refused(cursor):
    with pytest.raises(InvalidQuery, match="not one this search returned"):
        decode_cursor(SearchQuery(cursor=cursor))
    assert InvalidQuery.status == 400


def test_filters_go_to_the_query_and_facet_filters_to_post_filter():
    body = build_request(SearchQuery(text="lamp", category="/home/", brands=("Lumo",), price_min=100,
                                     price_max=200, in_stock=False, sort=Sort.NEWEST, size=7))
    q = body["query"]["bool"]
    assert q["must"][0]["multi_match"]["fuzziness"] == "AUTO"
    assert {"range": {"price_minor": {"gte": 100, "lte": 200}}} in q["filter"]
    assert q["must_not"][0]["has_child"]["type"] == "stock"
    assert body["post_filter"] == {"bool": {"filter": [{"terms": {"brand": ["Lumo"]}},
                                                        {"term": {"category.tree": "home"}}]}}
    # Each facet counts under the other facet's filter only.
    assert body["aggs"]["brand"]["filter"] == {"bool": {"filter": [{"term": {"category.tree": "home"}}]}}
    assert body["aggs"]["category"]["filter"] == {"bool": {"filter": [{"terms": {"brand": ["Lumo"]}}]}}
    assert body["sort"] == [{"updated_at": "desc"}, {"sku": "asc"}]
    assert body["size"] == 7 and "search_after" not in body


def test_no_text_matches_everything_and_every_sort_ends_on_sku():
    for sort in Sort:
        body = build_request(SearchQuery(sort=sort))
        assert body["query"]["bool"]["must"] == [{"match_all": {}}]
        assert body["sort"][-1] == {"sku": "asc"}
        assert "post_filter" not in body


@pytest.mark.parametrize(("query", "message"), [
    (SearchQuery(size=0), "size"), (SearchQuery(size=101), "size"),
    (SearchQuery(price_min=10, price_max=5), "above price_max"), (SearchQuery(price_min=-1), "non-negative"),
    (SearchQuery(text="x" * 501), "longer than 500"),
])
def test_bad_queries_are_refused(query, message):
    with pytest.raises(InvalidQuery, match=message):
        build_request(query)


def test_suggest_inputs_start_at_each_word_and_add_the_brand():
    assert suggest_inputs("Wireless Noise Cancelling Headphones", "Aurora") == [
        "Wireless Noise Cancelling Headphones", "Noise Cancelling Headphones", "Cancelling Headphones",
        "Headphones", "Aurora Wireless Noise Cancelling Headphones"]


def _event(active: bool) -> ProductUpserted:
    return ProductUpserted(event_id=str(uuid.uuid4()), sku="S-1", version=3, name="Desk Lamp", description="LED",
                           brand="Lumo", category="home/lighting", price=Money(3999, "EUR"), attributes={"k": "v"},
                           active=active, occurred_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_a_document_carries_the_event_and_suggests_only_active_products():
    doc = product_document(_event(True))
    assert {k: doc[k] for k in ("sku", "price_minor", "currency", "version", "category", "relation")} == {
        "sku": "S-1", "price_minor": 3999, "currency": "EUR", "version": 3, "category": "home/lighting",
        "relation": "product"}
    assert doc["updated_at"] == "2026-01-01T00:00:00+00:00"
    assert "Lumo Desk Lamp" in doc["suggest"]["input"]
    assert "suggest" not in product_document(_event(False))
