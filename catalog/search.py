"""Product search as the edge asks it: the query, its results, the opaque cursor, and the request body.

Pure (no server): ``build_request`` turns a ``SearchQuery`` into the OpenSearch request body, and
``search_hit`` turns a hit back into a plain dataclass for the edge. The index those requests run
against, its definition and the indexer's writes are ``shopflow.catalog.search_index``.
Pagination is ``search_after`` behind an opaque cursor that is refused for any other query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from shopflow.catalog.products import ProductDetails

MAX_PAGE: Final = 100
MAX_TEXT: Final = 500
FACET_SIZE: Final = {"brand": 20, "category": 50}


class SearchError(Exception):
    """Search could not answer; ``status`` is the HTTP status the edge answers with."""

    status: int = 503


class InvalidQuery(SearchError):
    """A query the caller got wrong (bad cursor, inverted price range, ...)."""

    status = 400


# -- queries and results ---------------------------------------------------------------------------


class Sort(StrEnum):
    RELEVANCE = "relevance"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    NEWEST = "newest"


# Every order ends on sku, which is unique, so search_after never skips or repeats a tie.
SORTS: Final[dict[Sort, list[dict[str, str]]]] = {
    Sort.RELEVANCE: [{"_score": "desc"}, {"sku": "asc"}],
    Sort.PRICE_ASC: [{"price_minor": "asc"}, {"sku": "asc"}],
    Sort.PRICE_DESC: [{"price_minor": "desc"}, {"sku": "asc"}],
    Sort.NEWEST: [{"updated_at": "desc"}, {"sku": "asc"}],
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchQuery:
    text: str = ""
    category: str | None = None  # a category path; matches its whole subtree
    brands: tuple[str, ...] = ()
    price_min: int | None = None  # minor units, inclusive
    price_max: int | None = None
    in_stock: bool | None = None
    sort: Sort = Sort.RELEVANCE
    size: int = 20
    cursor: str | None = None  # next_cursor of the previous page of this same query


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchHit(ProductDetails):
    """A product as the search index finds it: with its stock flag and relevance."""

    in_stock: bool
    score: float | None


@dataclass(frozen=True, slots=True)
class FacetCount:
    value: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    hits: list[SearchHit]
    total: int
    facets: dict[str, list[FacetCount]] = field(default_factory=dict)
    next_cursor: str | None = None  # None on the last page


@dataclass(frozen=True, slots=True)
class Suggestion:
    sku: str
    name: str


# -- the cursor ------------------------------------------------------------------------------------


def _fingerprint(q: SearchQuery) -> str:
    """What must stay the same between pages: a cursor from another query is refused."""
    key = json.dumps([q.text.strip(), q.category, sorted(q.brands), q.price_min, q.price_max, q.in_stock, q.sort.value])
    return hashlib.blake2s(key.encode(), digest_size=6).hexdigest()


def encode_cursor(query: SearchQuery, search_after: Sequence[Any]) -> str:
    doc = {"v": 1, "q": _fingerprint(query), "after": list(search_after)}
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(query: SearchQuery) -> list[Any] | None:
    """The ``search_after`` values of ``query.cursor`` (None without one); ``InvalidQuery`` if it is not ours."""
    if not query.cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(query.cursor + "=" * (-len(query.cursor) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidQuery("cursor is not one this search returned") from None
    after = doc.get("after") if isinstance(doc, dict) else None
    if (doc.get("v") if isinstance(doc, dict) else None) != 1 or not isinstance(after, list) or len(after) != 2 \
            or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in after):
        raise InvalidQuery("cursor is not one this search returned")
    if doc.get("q") != _fingerprint(query):
        raise InvalidQuery("cursor belongs to another query (text, filters or sort changed); start from the first page")
    return after


# -- request building (pure) -----------------------------------------------------------------------

IS_PRODUCT: Final = {"term": {"relation": "product"}}
# The monitor's freshness probe (streams/monitor.py) updates this product through the catalog's normal
# write path and times it into the index; it is inactive (never sold nor suggested) and no search shows it.
HEARTBEAT_SKU: Final = "SHOPFLOW-HEARTBEAT"
_HAS_STOCK: Final = {"has_child": {"type": "stock", "query": {"range": {"available": {"gt": 0}}}, "score_mode": "none"}}


def _validate(q: SearchQuery) -> None:
    if not 1 <= q.size <= MAX_PAGE:
        raise InvalidQuery(f"size must be 1-{MAX_PAGE}, not {q.size}")
    for name in ("price_min", "price_max"):
        value = getattr(q, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidQuery(f"{name} must be a non-negative integer of minor units, not {value!r}")
    if q.price_min is not None and q.price_max is not None and q.price_min > q.price_max:
        raise InvalidQuery(f"price_min {q.price_min} is above price_max {q.price_max}")
    if len(q.text) > MAX_TEXT:
        raise InvalidQuery(f"text is longer than {MAX_TEXT} characters")


def build_request(q: SearchQuery) -> dict[str, Any]:
    """The OpenSearch request body of a query.

    Facets are disjunctive: the brand and category filters go in ``post_filter`` and each facet
    counts under the other facets' filters only, so picking a brand still shows the other brands
    with their counts.
    """
    _validate(q)
    text = q.text.strip()
    must: dict[str, Any] = {"match_all": {}} if not text else {"multi_match": {
        "query": text, "fields": ["name^3", "brand.text^2", "description"],
        "fuzziness": "AUTO", "prefix_length": 1, "operator": "and",
    }}
    filters: list[dict[str, Any]] = [IS_PRODUCT]
    must_not: list[dict[str, Any]] = []
    if q.price_min is not None or q.price_max is not None:
        bounds = {k: v for k, v in (("gte", q.price_min), ("lte", q.price_max)) if v is not None}
        filters.append({"range": {"price_minor": bounds}})
    if q.in_stock is True:
        filters.append(_HAS_STOCK)
    elif q.in_stock is False:
        must_not.append(_HAS_STOCK)
    must_not.append({"term": {"sku": HEARTBEAT_SKU}})
    facet_filters = {
        "brand": {"terms": {"brand": list(q.brands)}} if q.brands else None,
        "category": {"term": {"category.tree": q.category.strip("/")}} if q.category else None,
    }

    def others(facet: str) -> dict[str, Any]:
        rest = [f for name, f in facet_filters.items() if f is not None and name != facet]
        return {"bool": {"filter": rest}} if rest else {"match_all": {}}

    body: dict[str, Any] = {
        "query": {"bool": {
            "must": [must], "filter": filters, "must_not": must_not,
            # Says per hit whether it has stock without changing its score (boost 0) or the hits.
            "should": [{"has_child": {**_HAS_STOCK["has_child"], "boost": 0,
                                      "inner_hits": {"name": "stock", "size": 0}}}],
            "minimum_should_match": 0,
        }},
        "sort": SORTS[q.sort],
        "size": q.size,
        "track_total_hits": True,
        "_source": {"excludes": ["suggest", "relation"]},
        "aggs": {name: {"filter": others(name),
                        "aggs": {"values": {"terms": {"field": name, "size": FACET_SIZE[name]}}}}
                 for name in facet_filters},
    }
    active = [f for f in facet_filters.values() if f is not None]
    if active:
        body["post_filter"] = {"bool": {"filter": active}}
    after = decode_cursor(q)
    if after is not None:
        body["search_after"] = after
    return body


def search_hit(h: dict[str, Any]) -> SearchHit:
    """A search response's hit as the edge shows it (``in_stock`` from the stock child it matched)."""
    s = h["_source"]
    stock = h.get("inner_hits", {}).get("stock", {}).get("hits", {}).get("total", {}).get("value", 0)
    return SearchHit(
        sku=s["sku"], name=s["name"], description=s["description"], brand=s.get("brand"),
        category=s.get("category"), price_minor=s["price_minor"], currency=s["currency"],
        attributes=s.get("attributes") or {}, active=s["active"], in_stock=stock > 0, version=s["version"],
        updated_at=datetime.fromisoformat(s["updated_at"]), score=h.get("_score"),
        images=tuple(s.get("images") or ()),
    )
