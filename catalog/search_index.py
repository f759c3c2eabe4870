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

Readers and writers address ``products`` (``DEFAULT_INDEX``), an alias over one concrete index, a
*generation* (``products-initial``, then ``products-<UTC stamp>``), so the index can be rebuilt beside
the live one and swapped in with one atomic ``_aliases`` call (``shopflow search rebuild``,
``streams/search_rebuild.py``). ``ensure_index()`` makes the alias on a fresh stack too, so every stack
has the same shape; a stack from before the alias has a concrete ``products``, which the first rebuild
replaces by the alias in that same call. The first generation's name is fixed, not stamped: the
indexer's two feeds and the edge ensure the index at the same moment on start, and a fixed name makes
the losers of that race find the winner's index instead of adding their own under the alias.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, RequestError, TransportError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed

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
FIRST_GENERATION: Final = "initial"
READ_ATTEMPTS, READ_PAUSE_S = 4, 0.05


class IndexMappingConflict(SearchError):
    """The live index's mapping cannot take the declared one: reindex into a new index."""

    status = 500


def index_definition() -> dict[str, Any]:
    return json.loads(INDEX_FILE.read_text())


# -- generations behind the alias ------------------------------------------------------------------


def generation_name(alias: str, at: datetime) -> str:
    """A new concrete index for ``alias``, named by when it was made (UTC, to the millisecond)."""
    return f"{alias}-{at.astimezone(UTC):%Y%m%d-%H%M%S}-{at.microsecond // 1000:03d}"


@dataclass(frozen=True, slots=True)
class Generations:
    """What a name stands for now: the concrete indices behind an alias, or a concrete index of that
    name (a stack from before the alias), or nothing."""

    name: str
    indices: tuple[str, ...] = ()
    concrete: bool = False


def switch_actions(current: Generations, new_index: str) -> list[dict[str, Any]]:
    """The ``_aliases`` actions that point ``current.name`` at ``new_index`` alone, in one atomic call.
    A concrete index of that name is deleted in the same call (``remove_index``): an alias and an index
    cannot share a name, and readers must never see neither."""
    actions: list[dict[str, Any]] = [{"add": {"index": new_index, "alias": current.name}}]
    if current.concrete:
        actions.append({"remove_index": {"index": current.name}})
    else:
        actions += [{"remove": {"index": old, "alias": current.name}} for old in current.indices if old != new_index]
    return actions


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
        "images": list(event.images),
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


@dataclass(frozen=True, slots=True)
class StockLevel:
    """A sku's available units, a ``stock`` child of its product doc; ``version`` grows with every change."""

    sku: str
    version: int
    available: int


Write = Upsert | Delete | StockLevel


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


def _gone(exc: BaseException) -> bool:
    return isinstance(exc, TransportError) and exc.status_code in (404, 503)


def _search_error(exc: TransportError) -> SearchError:
    """What the callers are told, with what to do where there is something to do."""
    if isinstance(exc, OSConnectionError | ConnectionTimeout):
        return SearchError(f"OpenSearch unreachable ({exc}); start it with `shopflow stack up`")
    if isinstance(exc, RequestError):
        return InvalidQuery(f"OpenSearch refused the request: {exc.info if exc.info else exc}")
    return SearchError(f"OpenSearch failed ({exc.status_code}): {exc.error}")


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
        except TransportError as exc:
            raise _search_error(exc) from None

    def _read(self, fn: Callable[..., Any], **kw: Any) -> Any:
        """A query, asked again (``READ_ATTEMPTS`` in all) while its index is missing or has no shard to
        answer: a rebuild's switch replacing a concrete index deletes it in the same call, and for some
        tens of milliseconds after it queries still reach it and fail; asked again, through the alias,
        they reach the new generation. A red index fails as before, ``READ_PAUSE_S`` per attempt later."""
        try:
            return Retrying(retry=retry_if_exception(_gone), stop=stop_after_attempt(READ_ATTEMPTS),
                            wait=wait_fixed(READ_PAUSE_S), reraise=True)(fn, **kw)
        except TransportError as exc:
            raise _search_error(exc) from None

    def ensure_index(self) -> bool:
        """Make the index from ``search_index.json`` (its first generation under the alias), or add new
        fields to the one there.

        Returns True when the index was created. A declared change the live mapping cannot take
        (a field's type, an analyzer) raises ``IndexMappingConflict``: rebuild it (``shopflow search rebuild``).
        """
        definition = index_definition()
        if not self._call(self.client.indices.exists, index=self.index):
            first = f"{self.index}-{FIRST_GENERATION}"
            try:
                self.client.indices.create(index=first, body={**definition, "aliases": {self.index: {}}})
                return True
            except RequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise InvalidQuery(f"cannot create index {first}: {exc.info}") from None
                # Another process won the race: its index, under the alias (idempotent).
                self._call(self.client.indices.put_alias, index=first, name=self.index)
        try:
            self.client.indices.put_mapping(index=self.index, body=definition["mappings"])
        except RequestError as exc:
            raise IndexMappingConflict(
                f"index {self.index} cannot take the mapping in {INDEX_FILE.name}: {exc.info}; "
                "rebuild it with `shopflow search rebuild`") from None
        return False

    def generations(self) -> Generations:
        """What ``self.index`` stands for now (read from the cluster state: answers on a red index too)."""
        if self._call(self.client.indices.exists_alias, name=self.index):
            found = self._call(self.client.indices.get_alias, name=self.index)
            return Generations(self.index, tuple(sorted(found)))
        if self._call(self.client.indices.exists, index=self.index):
            return Generations(self.index, (self.index,), concrete=True)
        return Generations(self.index)

    def create_generation(self, name: str) -> ProductSearch:
        """A new concrete index from the definition, set for bulk loading (no refresh until
        ``loaded()``), not under any alias yet; its own client view, to fill it."""
        definition = index_definition()
        settings = definition.get("settings", {})
        loading = {**settings, "index": {**settings.get("index", {}), "refresh_interval": "-1"}}
        self._call(self.client.indices.create, index=name, body={**definition, "settings": loading})
        return ProductSearch(self.client, name)

    def loaded(self) -> None:
        """A generation is filled: back to the declared refresh interval, and everything searchable now."""
        interval = index_definition()["settings"]["index"]["refresh_interval"]
        self._call(self.client.indices.put_settings, index=self.index, body={"index": {"refresh_interval": interval}})
        self.refresh()

    def switch_to(self, current: Generations, new_index: str) -> None:
        """Point the alias at ``new_index`` alone, in one atomic call (see ``switch_actions``)."""
        self._call(self.client.indices.update_aliases, body={"actions": switch_actions(current, new_index)})

    def delete_index(self) -> None:
        """Delete the index, or every generation behind the alias (an alias cannot be deleted by name)."""
        self.delete_generations(self.generations().indices)

    def delete_generations(self, indices: Sequence[str]) -> None:
        if indices:
            self._call(self.client.indices.delete, index=",".join(indices), ignore_unavailable=True)

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
            meta: dict[str, Any] = {"_index": self.index, "_id": w.sku, "version": w.version,
                                    "version_type": "external"}
            if isinstance(w, Upsert):
                body += [{"index": meta}, w.document]
            elif isinstance(w, StockLevel):
                body += [{"index": {**meta, "_id": f"stock-{w.sku}", "routing": w.sku}},
                         {"relation": {"name": "stock", "parent": w.sku}, "available": w.available}]
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
        result, = self.apply([StockLevel(sku, version, available)], refresh=refresh)
        if result.outcome is Outcome.REJECTED:
            raise SearchError(f"OpenSearch refused the stock of {sku}: {result.detail}")
        return result.outcome is Outcome.APPLIED

    # -- reads ---------------------------------------------------------------------------------

    def get_document(self, sku: str) -> dict[str, Any] | None:
        """A product's document straight from the index (real-time, no refresh needed), with ``_version``."""
        r = self._call(self.client.get, index=self.index, id=sku, params={"ignore": 404})
        return {**r["_source"], "_version": r["_version"]} if r.get("found") else None

    def count(self) -> int:
        return self._read(self.client.count, index=self.index, body={"query": IS_PRODUCT})["count"]

    def search(self, query: SearchQuery) -> SearchResult:
        body = build_request(query)
        r = self._read(self.client.search, index=self.index, body=body)
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
        r = self._read(self.client.search, index=self.index, body=body)
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
            hits = self._read(self.client.search, index=self.index, body=body)["hits"]["hits"]
            if not hits:
                return out
            out.update((h["_id"], h["_source"]["version"]) for h in hits)
            after = hits[-1]["sort"]
