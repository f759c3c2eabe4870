"""Search features over a real OpenSearch index seeded with a small known catalog: typos, filters,
disjunctive facets, suggestions, sorting and search_after pages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from catalog_pipeline import throwaway_index

from shopflow.catalog.search import InvalidQuery, SearchQuery, Sort
from shopflow.catalog.search_index import Outcome, ProductSearch, Upsert, product_document
from shopflow.schemas.catalog import ProductUpserted
from shopflow.schemas.records import Money

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# sku, name, description, brand, category, price, active
CATALOG = [
    ("HP-1", "Aurora Wireless Headphones", "Over-ear, noise cancelling, 30 h battery",
     "Aurora", "audio/headphones", 12999, True),
    ("HP-2", "Aurora Studio Headphones", "Closed-back monitoring headphones", "Aurora", "audio/headphones", 8999, True),
    ("HP-3", "Borealis Sport Earbuds", "Wireless in-ear buds, sweat resistant",
     "Borealis", "audio/headphones", 4999, True),
    ("HP-4", "Cirrus Kids Headphones", "Volume-limited headphones for children",
     "Cirrus", "audio/headphones", 1999, True),
    ("HP-5", "Borealis Noise Cancelling Headphones", "Adaptive noise cancelling, USB-C",
     "Borealis", "audio/headphones", 19999, True),
    ("SP-1", "Aurora Bookshelf Speaker", "Pair of passive speakers", "Aurora", "audio/speakers", 24999, True),
    ("SP-2", "Borealis Portable Speaker", "Waterproof bluetooth speaker", "Borealis", "audio/speakers", 5999, True),
    ("SP-3", "Cirrus Smart Speaker", "Voice assistant speaker", "Cirrus", "audio/speakers", 7999, True),
    ("SP-4", "Cirrus Party Speaker", "Loud speaker with lights", "Cirrus", "audio/speakers", 14999, False),
    ("LI-1", "Lumo Desk Lamp", "LED desk lamp, dimmable", "Lumo", "home/lighting", 3999, True),
    ("LI-2", "Lumo Floor Lamp", "Arc floor lamp", "Lumo", "home/lighting", 9999, True),
    ("LI-3", "Aurora Smart Bulb", "Colour smart bulb", "Aurora", "home/lighting", 1499, True),
    ("KI-1", "Lumo Kettle", "Electric kettle 1.7 l", "Lumo", "home/kitchen", 2999, True),
    ("KI-2", "Cirrus Toaster", "Two-slot toaster", "Cirrus", "home/kitchen", 2999, True),
    ("KI-3", "Borealis Blender", "High speed blender", "Borealis", "home/kitchen", 8999, True),
    ("AU-1", "Aurora Turntable", "Belt drive turntable", "Aurora", "audio", 29999, True),
    ("NB-1", "Generic Cable", "USB-C cable", None, None, 999, True),
]
IN_STOCK = {"HP-1": 5, "HP-3": 2, "SP-2": 1, "LI-1": 7, "KI-3": 3}
OUT_OF_STOCK = {"HP-2": 0}


@pytest.fixture(scope="module")
def seeded(stack) -> Iterator[ProductSearch]:
    with throwaway_index(stack, "test-search") as search:
        _seed(search)
        yield search


def _seed(search: ProductSearch) -> None:
    writes = []
    for i, (sku, name, description, brand, category, price, active) in enumerate(CATALOG):
        event = ProductUpserted(event_id=str(uuid.uuid4()), sku=sku, version=1, name=name, description=description,
                                brand=brand, category=category, price=Money(price, "EUR"),
                                attributes={"colour": "black"}, active=active, occurred_at=T0 + timedelta(hours=i))
        writes.append(Upsert(sku, 1, product_document(event)))
    assert {r.outcome for r in search.apply(writes)} == {Outcome.APPLIED}
    for sku, available in {**IN_STOCK, **OUT_OF_STOCK}.items():
        assert search.set_stock(sku, available, version=1)
    search.refresh()


def skus(result) -> set[str]:
    return {h.sku for h in result.hits}


def test_full_text_tolerates_typos(seeded):
    assert skus(seeded.search(SearchQuery(text="headphnoes"))) == {"HP-1", "HP-2", "HP-4", "HP-5"}
    assert skus(seeded.search(SearchQuery(text="wireles"))) == {"HP-1", "HP-3"}  # name or description


def test_relevance_puts_name_matches_first(seeded):
    hits = seeded.search(SearchQuery(text="noise cancelling")).hits
    assert hits[0].sku == "HP-5"  # in the name; HP-1 has it in the description only
    assert {h.sku for h in hits} == {"HP-1", "HP-5"}


def test_category_filter_takes_the_whole_subtree(seeded):
    audio = {s for s, *_, c, _, _ in CATALOG if c and c.startswith("audio")}
    assert skus(seeded.search(SearchQuery(category="audio", size=50))) == audio
    assert skus(seeded.search(SearchQuery(category="audio/speakers"))) == {"SP-1", "SP-2", "SP-3", "SP-4"}
    assert seeded.search(SearchQuery(category="aud")).total == 0  # a path segment, not a prefix of one


def test_brand_price_and_stock_filters(seeded):
    assert skus(seeded.search(SearchQuery(brands=("Lumo",)))) == {"LI-1", "LI-2", "KI-1"}
    lumo_or_cirrus_at_home = SearchQuery(brands=("Lumo", "Cirrus"), category="home")
    assert skus(seeded.search(lumo_or_cirrus_at_home)) == {"LI-1", "LI-2", "KI-1", "KI-2"}
    assert skus(seeded.search(SearchQuery(price_min=2999, price_max=4999))) == {"HP-3", "LI-1", "KI-1", "KI-2"}

    in_stock = seeded.search(SearchQuery(in_stock=True, size=50))
    assert skus(in_stock) == set(IN_STOCK)
    assert all(h.in_stock for h in in_stock.hits)
    out = seeded.search(SearchQuery(in_stock=False, size=50))
    assert skus(out) == {c[0] for c in CATALOG} - set(IN_STOCK)
    assert not any(h.in_stock for h in out.hits)


def test_stock_versions_are_external_too(seeded):
    assert seeded.set_stock("LI-2", 4, version=2, refresh="wait_for")
    assert not seeded.set_stock("LI-2", 0, version=1)  # late: ignored
    assert "LI-2" in skus(seeded.search(SearchQuery(in_stock=True, size=50)))
    assert seeded.set_stock("LI-2", 0, version=3, refresh="wait_for")
    assert "LI-2" not in skus(seeded.search(SearchQuery(in_stock=True, size=50)))


def test_facets_count_values_and_stay_disjunctive(seeded):
    everything = seeded.search(SearchQuery(size=1))
    brands = {f.value: f.count for f in everything.facets["brand"]}
    assert brands == {"Aurora": 5, "Borealis": 4, "Cirrus": 4, "Lumo": 3}
    assert {f.value: f.count for f in everything.facets["category"]}["audio/headphones"] == 5

    aurora = seeded.search(SearchQuery(brands=("Aurora",), size=50))
    assert skus(aurora) == {"HP-1", "HP-2", "SP-1", "LI-3", "AU-1"}
    # The brand facet ignores the brand filter (other brands stay pickable), not the other filters.
    assert {f.value: f.count for f in aurora.facets["brand"]} == brands
    assert {f.value: f.count for f in aurora.facets["category"]} == {
        "audio/headphones": 2, "audio/speakers": 1, "home/lighting": 1, "audio": 1}
    cheap_aurora = seeded.search(SearchQuery(brands=("Aurora",), price_max=9999))
    assert {f.value: f.count for f in cheap_aurora.facets["brand"]}["Aurora"] == 2


def test_suggestions_as_you_type(seeded):
    def suggested(prefix: str) -> list[str]:
        return [s.sku for s in seeded.suggest(prefix)]

    assert suggested("aurora stu")[0] == "HP-2"  # exact prefix first, fuzzy neighbours after
    assert set(suggested("lumo")) == {"LI-1", "LI-2", "KI-1"}
    assert suggested("noise canc")[0] == "HP-5"  # from a word inside the name
    assert "HP-1" in suggested("wirelss")  # a typo
    assert "SP-4" not in suggested("cirrus")  # inactive: listed, not suggested
    assert [s.name for s in seeded.suggest("lumo k")][:1] == ["Lumo Kettle"]
    assert suggested("") == []


@pytest.mark.parametrize("sort", list(Sort))
def test_search_after_pages_cover_every_hit_exactly_once_in_order(seeded, sort):
    # Relevance over a text query (scores differ, ties fall back to sku); the others over everything.
    query = SearchQuery(text="aurora" if sort is Sort.RELEVANCE else "", sort=sort, size=4)
    whole = seeded.search(SearchQuery(**{**_fields(query), "size": 100}))
    pages, cursor = [], None
    while True:
        page = seeded.search(SearchQuery(**{**_fields(query), "cursor": cursor}))
        pages.append(page.hits)
        cursor = page.next_cursor
        if cursor is None:
            break

    walked = [h.sku for hits in pages for h in hits]
    assert walked == [h.sku for h in whole.hits]
    assert len(walked) == len(set(walked)) == whole.total
    assert all(len(p) == 4 for p in pages[:-1])
    if sort is Sort.PRICE_ASC:
        assert [h.price_minor for hits in pages for h in hits] == sorted(h.price_minor for h in whole.hits)
    if sort is Sort.PRICE_DESC:
        prices = [h.price_minor for hits in pages for h in hits]
        assert prices == sorted(prices, reverse=True)
    if sort is Sort.NEWEST:
        times = [h.updated_at for hits in pages for h in hits]
        assert times == sorted(times, reverse=True)


def test_a_cursor_is_refused_for_another_query(seeded):
    first = seeded.search(SearchQuery(brands=("Aurora",), size=2))
    with pytest.raises(InvalidQuery, match="another query"):
        seeded.search(SearchQuery(brands=("Lumo",), size=2, cursor=first.next_cursor))
    with pytest.raises(InvalidQuery, match="not one this search returned"):
        seeded.search(SearchQuery(cursor="bm90LWEtY3Vyc29y"))


def _fields(q: SearchQuery) -> dict:
    return {name: getattr(q, name) for name in q.__dataclass_fields__}
