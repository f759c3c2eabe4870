"""The OpenSearch product index: the read model of the catalog, its definition, documents and writes.

The index's settings and mapping are data in the repo (``catalog/search_index.json``) and
``ProductSearch.ensure_index()`` applies them. The notable choices in that file:

- ``product_text`` (standard tokens, lower case, ASCII folding, light English stemming) on name,
  description and brand; queries add ``fuzziness: AUTO`` for typo tolerance.
- ``category`` is a keyword (exact, for facets) with a ``category.tree`` sub-field tokenized by
  ``path_hierarchy``: ``audio/headphones`` is indexed as ``audio`` and ``audio/headphones``, so
  a term on ``category.tree`` selects a whole subtree.
- ``suggest`` is a completion field (as-you-type suggestions, fuzzy) filled for active products.
- ``relation`` is a join field: a product doc has ``stock`` children (``available`` units) written
  by the inventory side with ``set_stock``. Stock lives in its own doc because a product doc is
  versioned externally by the catalog's event version, and a second writer updating that doc would
  move its version and make the next catalog event look stale.
- ``refresh_interval`` 250 ms: a change is searchable within a quarter second of being indexed
  without the indexer forcing refreshes. The CDC benchmark's budget is p99 <= 1.5 s from commit, and
  Debezium's own poll interval (500 ms by default) already takes a third of it; with 500 ms here
  p99 sat on the target (1.4-1.55 s), with 250 ms it is about 1.25 s (benchmarks/results.md).
- ``gc_deletes`` keeps a deleted doc's version for 10 minutes (default 60 s), so an old upsert
  replayed after a delete, within that window, is refused rather than bringing the product back.

Writes come from the search indexer (``streams/indexer.py``) with ``version_type=external`` and the
event's version: a duplicate or late event gets a version conflict and changes nothing.
The queries it answers are built by ``shopflow.catalog.search``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, RequestError, TransportError

from shopflow.catalog.search import (
    IS_PRODUCT,
    FacetCount,
    InvalidQuery,
    SearchError,
    SearchQuery,
    SearchResult,
    Suggestion,
    build_request,
    encode_cursor,
    search_hit,
)
from shopflow.schemas.catalog import ProductUpserted
from shopflow.settings import Settings

INDEX_FILE: Final = Path(__file__).resolve().parent / "search_index.json"
DEFAULT_INDEX: Final = "products"


class IndexMappingConflict(SearchError):
    """The live index's mapping cannot take the declared one: reindex into a new index."""

    status = 500


def index_definition() -> dict[str, Any]:
    return json.loads(INDEX_FILE.read_text())


# -- documents -------------------------------------------------------------------------------------


def suggest_inputs(name: str, brand: str | None) -> list[str]:
    """What a user may start typing to reach a product: its name from each of its first words on
    (so "noise" completes "Wireless Noise Cancelling Headphones"), and its brand before its name."""
    words = name.split()
    inputs = [" ".join(words[i:]) for i in range(min(len(words), 5))]
    if brand:
        inputs.append(f"{brand} {name}")
    return [s[:100] for s in dict.fromkeys(inputs)]


def product_document(event: ProductUpserted) -> dict[str, Any]:
    """The search document of a product as a ProductUpserted event carries it."""
    doc: dict[str, Any] = {
        "relation": "product", "sku": event.sku, "name": event.name, "description": event.description,
        "brand": event.brand, "category": event.category, "price_minor": event.price.amount_minor,
        "currency": event.price.currency, "attributes": dict(event.attributes), "active": event.active,
        "version": event.version, "updated_at": event.occurred_at.astimezone(UTC).isoformat(),
    }
    if event.active:  # inactive products are listed, not suggested
        doc["suggest"] = {"input": suggest_inputs(event.name, event.brand)}
    return doc


# -- writes (the indexer's) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upsert:
    sku: str
    version: int
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delete:
    sku: str
    version: int


Write = Upsert | Delete


class Outcome(StrEnum):
    APPLIED = "applied"
    STALE = "stale"  # the index already holds this version or a newer one: nothing to do
    REJECTED = "rejected"  # the document itself was refused (mapping, size): a dead letter


@dataclass(frozen=True, slots=True)
class WriteResult:
    outcome: Outcome
    detail: str = ""


def _transient(status: int) -> bool:
    return status == 429 or status >= 500


# -- the client ------------------------------------------------------------------------------------


class ProductSearch:
    """One product index: applying its definition, the indexer's writes, and the edge's queries."""

    def __init__(self, client: OpenSearch, index: str = DEFAULT_INDEX):
        self.client = client
        self.index = index

    @classmethod
    def connect(cls, settings: Settings, index: str = DEFAULT_INDEX, **kw: Any) -> ProductSearch:
        return cls(OpenSearch(settings.search_url, timeout=30, **kw), index)

    def close(self) -> None:
        self.client.close()

    def _call(self, fn: Callable[..., Any], **kw: Any) -> Any:
        try:
            return fn(**kw)
        except (OSConnectionError, ConnectionTimeout) as exc:
            raise SearchError(f"OpenSearch unreachable ({exc}); start it with `shopflow stack up`") from None
        except RequestError as exc:
            raise InvalidQuery(f"OpenSearch refused the request: {exc.info if exc.info else exc}") from None
        except TransportError as exc:
            raise SearchError(f"OpenSearch failed ({exc.status_code}): {exc.error}") from None

    def ensure_index(self) -> bool:
        """Create the index from ``search_index.json``, or add new fields to an existing one.

        Returns True when the index was created. A declared change the live mapping cannot take
        (a field's type, an analyzer) raises ``IndexMappingConflict``: reindex into a new index.
        """
        definition = index_definition()
        if not self._call(self.client.indices.exists, index=self.index):
            try:
                self.client.indices.create(index=self.index, body=definition)
                return True
            except RequestError as exc:
                if exc.error != "resource_already_exists_exception":  # another process won the race
                    raise InvalidQuery(f"cannot create index {self.index}: {exc.info}") from None
        try:
            self.client.indices.put_mapping(index=self.index, body=definition["mappings"])
        except RequestError as exc:
            raise IndexMappingConflict(
                f"index {self.index} cannot take the mapping in {INDEX_FILE.name}: {exc.info}; "
                "create a new index from it and reindex") from None
        return False

    def delete_index(self) -> None:
        self.client.indices.delete(index=self.index, ignore_unavailable=True)

    def refresh(self) -> None:
        self._call(self.client.indices.refresh, index=self.index)

    def apply(self, writes: Sequence[Write], *, refresh: str | bool = False) -> list[WriteResult]:
        """Apply the writes in order (one bulk request), each versioned externally by its event version.

        A version conflict is ``STALE``; a refused document is ``REJECTED``; a server-side failure
        (429, 5xx, unreachable) raises ``SearchError`` so the caller retries the whole batch, which
        is safe because every write is idempotent under its version.
        """
        if not writes:
            return []
        body: list[dict[str, Any]] = []
        for w in writes:
            meta = {"_index": self.index, "_id": w.sku, "version": w.version, "version_type": "external"}
            if isinstance(w, Upsert):
                body += [{"index": meta}, w.document]
            else:
                body.append({"delete": meta})
        params = {"refresh": str(refresh).lower() if isinstance(refresh, bool) else refresh}
        response = self._call(self.client.bulk, body=body, params=params)
        results = []
        for item in response["items"]:
            (op, r), = item.items()
            status = r.get("status", 500)
            if status < 300 or (op == "delete" and status == 404):
                results.append(WriteResult(Outcome.APPLIED))
            elif status == 409:
                results.append(WriteResult(Outcome.STALE, r.get("error", {}).get("reason", "")))
            elif _transient(status):
                raise SearchError(f"OpenSearch could not apply {r.get('_id')} ({status}): {r.get('error')}")
            else:
                error = r.get("error", {})
                results.append(WriteResult(Outcome.REJECTED, f"{error.get('type')}: {error.get('reason')}"))
        return results

    def set_stock(self, sku: str, available: int, version: int, *, refresh: str | bool = False) -> bool:
        """Record a sku's available units (for the in-stock filter). For the inventory side: ``version``
        must increase with every change of that sku's stock; an older one is ignored (returns False)."""
        try:
            self.client.index(
                index=self.index, id=f"stock-{sku}", body={"relation": {"name": "stock", "parent": sku},
                                                          "available": available},
                params={"routing": sku, "version": version, "version_type": "external",
                        "refresh": str(refresh).lower() if isinstance(refresh, bool) else refresh},
            )
        except TransportError as exc:
            if exc.status_code == 409:
                return False
            raise SearchError(f"OpenSearch failed to record stock of {sku}: {exc}") from None
        return True

    # -- reads ---------------------------------------------------------------------------------

    def get_document(self, sku: str) -> dict[str, Any] | None:
        """A product's document straight from the index (real-time, no refresh needed), with ``_version``."""
        r = self._call(self.client.get, index=self.index, id=sku, params={"ignore": 404})
        return {**r["_source"], "_version": r["_version"]} if r.get("found") else None

    def count(self) -> int:
        return self._call(self.client.count, index=self.index, body={"query": IS_PRODUCT})["count"]

    def search(self, query: SearchQuery) -> SearchResult:
        body = build_request(query)
        r = self._call(self.client.search, index=self.index, body=body)
        raw_hits = r["hits"]["hits"]
        hits = [search_hit(h) for h in raw_hits]
        next_cursor = encode_cursor(query, raw_hits[-1]["sort"]) if len(raw_hits) == query.size else None
        facets = {name: [FacetCount(b["key"], b["doc_count"]) for b in agg["values"]["buckets"]]
                  for name, agg in r.get("aggregations", {}).items()}
        return SearchResult(hits=hits, total=r["hits"]["total"]["value"], facets=facets, next_cursor=next_cursor)

    def suggest(self, prefix: str, size: int = 8) -> list[Suggestion]:
        """Products whose name (or brand and name) starts with what was typed, typos tolerated."""
        prefix = prefix.strip()
        if not prefix:
            return []
        completion = {"field": "suggest", "size": size * 2, "skip_duplicates": True}
        body = {
            "_source": ["sku", "name"],
            # Two suggesters in one request: exact-prefix completions first, then the fuzzy ones
            # (typos), since fuzzy scoring alone can rank "lumo d..." above "lumo k..." for "lumo k".
            "suggest": {
                "exact": {"prefix": prefix[:100], "completion": completion},
                "fuzzy": {"prefix": prefix[:100], "completion": {
                    **completion, "fuzzy": {"fuzziness": "AUTO", "prefix_length": 1}}},
            },
        }
        r = self._call(self.client.search, index=self.index, body=body)
        out: dict[str, Suggestion] = {}
        # One product may come through several inputs and through both suggesters: keep its first.
        for name in ("exact", "fuzzy"):
            for option in r["suggest"][name][0]["options"]:
                sku = option["_source"]["sku"]
                out.setdefault(sku, Suggestion(sku, option["_source"]["name"]))
        return list(out.values())[:size]

    def scan_versions(self, skus: Iterable[str] | None = None) -> dict[str, int]:
        """sku -> indexed version of every product (or of these skus), for checks and benchmarks."""
        filters: list[dict[str, Any]] = [IS_PRODUCT]
        if skus is not None:
            filters.append({"terms": {"sku": list(skus)}})
        query = {"bool": {"filter": filters}}
        out: dict[str, int] = {}
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"query": query, "size": 1000, "sort": [{"sku": "asc"}], "_source": ["version"]}
            if after:
                body["search_after"] = after
            hits = self._call(self.client.search, index=self.index, body=body)["hits"]["hits"]
            if not hits:
                return out
            out.update((h["_id"], h["_source"]["version"]) for h in hits)
            after = hits[-1]["sort"]
