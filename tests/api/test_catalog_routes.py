"""The catalog and search routes over the real stack: written through the edge, found through the edge.

The path under test is the whole of issue 6's: ``POST /v1/products`` (admin) -> PostgreSQL row and
outbox row in one transaction -> Debezium -> a throwaway topic standing for ``catalog.products`` (the
outbox routes by aggregatetype, and the edge's ``EdgeTopics.catalog_products`` names it) -> the
search indexer, running here in a thread -> a throwaway index -> ``GET /v1/search`` of an app made
with ``search_index=`` that index. Updates and deletes follow the same way; product reads come from
the Redis cache and are not stale after a write. Roles (403/401) and bad input (422/400/409) too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from catalog_pipeline import RunningIndexer, apply_outbox_connector, outbox_topic, throwaway_index, unique
from polling import eventually_async

from shopflow.catalog.categories import MAX_CATEGORY_ID
from shopflow.settings import Settings
from shopflow.topologies.catalog import CATALOG_PRODUCTS

pytestmark = pytest.mark.integration
SEARCHABLE_S = 60.0  # a write to PostgreSQL until search finds it: Debezium, the topic, the indexer


def word() -> str:
    """A made-up word no other product has: letters only, so the analyzer keeps it as one token."""
    return "zq" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


# -- the pipeline: connector, topic, index, indexer (tests/catalog_pipeline.py), and an app wired to them ---


@pytest.fixture(scope="module")
async def catalog_topic(stack: Settings, topic_factory, admin) -> AsyncIterator[str]:
    """A fresh topic standing for catalog.products, with its dead-letter topic; the connector applied."""
    (await asyncio.to_thread(apply_outbox_connector, stack)).close()
    async with outbox_topic(stack, topic_factory, admin, "apicatalog") as topic:
        yield topic


@pytest.fixture(scope="module")
def test_index(stack: Settings) -> Iterator[str]:
    with throwaway_index(stack, "test-api-products") as search:
        yield search.index


@pytest.fixture(scope="module")
def indexer(stack: Settings, catalog_topic: str, test_index: str) -> Iterator[RunningIndexer]:
    running = RunningIndexer.start(stack, topic=catalog_topic, index=test_index, name="api-search-indexer")
    yield running
    running.close()


@pytest.fixture(scope="module")
async def shop(api_settings: Settings, catalog_topic: str, test_index: str,
               indexer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an edge whose catalog writes go to ``catalog_topic`` and whose search reads ``test_index``.

    The catalog is in the public schema (where Debezium reads the outbox), not the session's throwaway
    one: the products this module made are deleted again at the end."""
    from shopflow.api.dependencies import EdgeTopics
    from shopflow.api.main import create_app
    from shopflow.catalog import NotFound

    topics = EdgeTopics(catalog_products=dataclasses.replace(CATALOG_PRODUCTS, name=catalog_topic))
    application = create_app(api_settings, topics, search_index=test_index)
    async with application.router.lifespan_context(application):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://edge") as c:
            yield c
        for sku in sorted(MADE):
            with contextlib.suppress(NotFound):
                await application.state.edge.catalog.delete_product(sku)


@pytest.fixture(scope="module")
async def people(new_account) -> dict:
    """An admin and a customer (signed in on the session's app; tokens are good on any app with its secret)."""
    return {"admin": await new_account("admin"), "customer": await new_account()}


@pytest.fixture(scope="module")
async def tree(shop, people, idem) -> AsyncIterator[dict[str, dict]]:
    """A category root/child made for this module."""
    auth = people["admin"].auth
    root = await shop.post("/v1/categories", headers={**auth, **idem()},
                           json={"slug": unique("apitest").lower(), "name": "API test root"})
    assert root.status_code == 201, root.text
    child = await shop.post("/v1/categories", headers={**auth, **idem()},
                            json={"slug": "gadgets", "name": "Gadgets", "parent_id": root.json()["id"]})
    assert child.status_code == 201, child.text
    yield {"root": root.json(), "child": child.json()}
    for category in (child.json(), root.json()):  # children first; their products are deleted by then
        r = await shop.delete(f"/v1/categories/{category['id']}", headers={**auth, **idem()})
        assert r.status_code in (204, 404), r.text


# Every sku a product body was made for; ``shop`` deletes what is left of them at the end.
MADE: set[str] = set()


def product_body(sku: str, name: str, **kw: Any) -> dict:
    MADE.add(sku)
    return {"sku": sku, "name": name, "description": "Pocket sized, splash proof", "brand": "Acme",
            "price": {"amount_minor": 2599, "currency": "EUR"}, "attributes": {"color": "teal"}, **kw}


async def search_skus(shop: httpx.AsyncClient, **params: Any) -> dict[str, dict]:
    r = await shop.get("/v1/search", params=params)
    assert r.status_code == 200, r.text
    return {h["sku"]: h for h in r.json()["hits"]}


# -- written through the edge, found through the edge -----------------------------------------------------


async def test_a_product_created_updated_and_deleted_through_the_edge_follows_in_search(shop, people, idem, tree,
                                                                                       indexer):
    admin = people["admin"].auth
    sku, token = unique("T"), word()
    category = tree["child"]["path"]

    r = await shop.post("/v1/products", headers={**admin, **idem()},
                        json=product_body(sku, f"Acme {token} Lantern", category=category))
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v1/products/{sku}"
    created = r.json()
    assert (created["version"], created["category"], created["price"]) == (
        1, category, {"amount_minor": 2599, "currency": "EUR"})

    # Searchable, with a typo, and within its category's subtree; the facets count it.
    hit = (await eventually_async(lambda: search_skus(shop, q=token), SEARCHABLE_S, what=f"{sku} searchable",
                                  give_up=indexer.failure))[sku]
    assert (hit["name"], hit["brand"], hit["price"], hit["category"], hit["attributes"]) == (
        f"Acme {token} Lantern", "Acme", {"amount_minor": 2599, "currency": "EUR"}, category, {"color": "teal"})
    typo = token[:4] + ("b" if token[4] != "b" else "c") + token[5:]
    assert sku in await search_skus(shop, q=typo)
    r = await shop.get("/v1/search", params={"q": token, "category": tree["root"]["path"]})
    page = r.json()
    assert [h["sku"] for h in page["hits"]] == [sku]
    assert {"value": "Acme", "count": 1} in page["facets"]["brand"]
    assert {"value": category, "count": 1} in page["facets"]["category"]
    assert await search_skus(shop, q=token, price_min=3000) == {}
    r = await shop.get("/v1/search/suggest", params={"prefix": token[:7]})
    assert r.status_code == 200, r.text
    assert {"sku": sku, "name": f"Acme {token} Lantern"} in r.json()["suggestions"]

    # Read (and cached), updated, read again: the new version at once, not the cached one.
    r = await shop.get(f"/v1/products/{sku}")
    assert (r.status_code, r.json()["version"]) == (200, 1)
    r = await shop.get(f"/v1/products/{sku}")  # served from the cache now
    assert r.json() == created
    r = await shop.patch(f"/v1/products/{sku}", headers={**admin, **idem()},
                         json={"name": f"Acme {token} Lamp", "price": {"amount_minor": 1999, "currency": "EUR"},
                               "brand": None})
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["brand"]) == (2, None)
    r = await shop.get(f"/v1/products/{sku}")
    assert (r.json()["version"], r.json()["name"], r.json()["price"]["amount_minor"]) == (2, f"Acme {token} Lamp", 1999)

    async def updated_in_search() -> dict | None:
        found = await search_skus(shop, q=token)
        return found if found.get(sku, {}).get("price", {}).get("amount_minor") == 1999 else None

    hit = (await eventually_async(updated_in_search, SEARCHABLE_S, what=f"{sku} updated in search",
                                  give_up=indexer.failure))[sku]
    assert (hit["name"], hit["brand"]) == (f"Acme {token} Lamp", None)
    r = await shop.get(f"/v1/products/{sku}")  # after the indexer's own fence: still the new version
    assert r.json()["version"] == 2

    r = await shop.delete(f"/v1/products/{sku}", headers={**admin, **idem()})
    assert (r.status_code, r.json()) == (200, {"sku": sku, "version": 3})
    assert (await shop.get(f"/v1/products/{sku}")).status_code == 404

    async def gone() -> bool:
        return sku not in await search_skus(shop, q=token)

    await eventually_async(gone, SEARCHABLE_S, what=f"{sku} gone from search", give_up=indexer.failure)
    r = await shop.get(f"/v1/products/{sku}")
    assert (r.status_code, r.json()) == (404, {"detail": f"no product {sku}"})


async def test_search_pages_with_a_cursor_and_sorts(shop, people, idem, indexer):
    admin = people["admin"].auth
    token = word()
    skus = [unique("T") for _ in range(5)]
    for i, sku in enumerate(skus):
        r = await shop.post("/v1/products", headers={**admin, **idem()},
                            json=product_body(sku, f"{token} kettle {i}", price={"amount_minor": 100 + i,
                                                                                 "currency": "EUR"}))
        assert r.status_code == 201, r.text

    async def all_there() -> bool:
        return len(await search_skus(shop, q=token, size=10)) == 5

    await eventually_async(all_there, SEARCHABLE_S, what="five products searchable", give_up=indexer.failure)
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        params = {"q": token, "sort": "price_desc", "size": 2, **({"cursor": cursor} if cursor else {})}
        page = (await shop.get("/v1/search", params=params)).json()
        assert page["total"] == 5
        seen += [h["sku"] for h in page["hits"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(skus))  # price descending, each product once

    # A cursor of another query is refused with 400, as a made-up one is.
    first = (await shop.get("/v1/search", params={"q": token, "size": 2})).json()
    r = await shop.get("/v1/search", params={"q": token, "size": 2, "sort": "price_asc",
                                             "cursor": first["next_cursor"]})
    assert r.status_code == 400 and "another query" in r.json()["detail"], r.text


async def test_a_retried_create_gets_the_first_answer(shop, people, idem):
    admin = people["admin"].auth
    sku, key = unique("T"), idem()
    body = product_body(sku, "Retry lamp")
    first = await shop.post("/v1/products", headers={**admin, **key}, json=body)
    again = await shop.post("/v1/products", headers={**admin, **key}, json=body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    other = await shop.post("/v1/products", headers={**admin, **idem()}, json=body)
    assert other.status_code == 409 and f"product {sku} already exists" in other.json()["detail"]


async def test_the_category_tree(shop, people, idem, tree):
    r = await shop.get("/v1/categories")
    assert r.status_code == 200, r.text
    [root] = [n for n in r.json()["roots"] if n["id"] == tree["root"]["id"]]
    assert [(c["slug"], c["path"]) for c in root["children"]] == [("gadgets", tree["child"]["path"])]

    admin = people["admin"].auth
    r = await shop.post("/v1/categories", headers={**admin, **idem()},
                        json={"slug": "spare", "name": "Spare", "parent_id": tree["root"]["id"]})
    spare = r.json()
    r = await shop.patch(f"/v1/categories/{spare['id']}", headers={**admin, **idem()}, json={"name": "Spares"})
    assert (r.status_code, r.json()["name"], r.json()["path"]) == (200, "Spares", spare["path"])
    r = await shop.delete(f"/v1/categories/{tree['root']['id']}", headers={**admin, **idem()})
    assert r.status_code == 409 and "has subcategories" in r.json()["detail"]
    r = await shop.delete(f"/v1/categories/{spare['id']}", headers={**admin, **idem()})
    assert r.status_code == 204
    r = await shop.delete(f"/v1/categories/{spare['id']}", headers={**admin, **idem()})
    assert (r.status_code, r.json()) == (404, {"detail": f"no category {spare['id']}"})


# -- who may -------------------------------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("POST", "/v1/products", {"sku": "NOPE-1", "name": "n", "price": {"amount_minor": 1, "currency": "EUR"}}),
    ("PATCH", "/v1/products/NOPE-1", {"name": "n"}),
    ("DELETE", "/v1/products/NOPE-1", None),
    ("POST", "/v1/categories", {"slug": "nope", "name": "n"}),
    ("PATCH", "/v1/categories/1", {"name": "n"}),
    ("DELETE", "/v1/categories/1", None),
]


@pytest.mark.parametrize("method,path,body", ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES])
async def test_customers_get_403_and_anonymous_401_on_admin_routes(shop, people, idem, method, path, body):
    r = await shop.request(method, path, headers={**people["customer"].auth, **idem()}, json=body)
    assert r.status_code == 403 and "this needs the shop.admin permission" in r.json()["detail"]
    r = await shop.request(method, path, headers=idem(), json=body)
    assert r.status_code == 401 and "missing bearer token" in r.json()["detail"]


# -- bad input: the product rules' own messages (shopflow.catalog.products), as the repository words them ----

BAD_WRITES = [
    ("negative-price", "POST", "/v1/products", {"price": {"amount_minor": -1, "currency": "EUR"}}, 422,
     "amount_minor must not be negative (got -1)"),
    ("price-as-text", "POST", "/v1/products", {"price": {"amount_minor": "12", "currency": "EUR"}}, 422,
     "amount_minor must be an integer count of minor units"),
    ("lower-case-currency", "POST", "/v1/products", {"price": {"amount_minor": 1, "currency": "eur"}}, 422,
     "(codes are upper case)"),
    ("not-a-currency", "POST", "/v1/products", {"price": {"amount_minor": 1, "currency": "XXY"}}, 422,
     "not an ISO 4217 code"),
    ("bad-sku", "POST", "/v1/products", {"sku": "-x y"}, 422, "must be 1-64 letters, digits"),
    ("unknown-field", "POST", "/v1/products", {"stock": 5}, 422, "Extra inputs are not permitted"),
    ("blank-name", "POST", "/v1/products", {"name": "  "}, 422, "name must not be empty"),
    ("control-in-name", "POST", "/v1/products", {"name": "Lamp\u0007"}, 422, "must not contain control characters"),
    ("category-not-a-path", "POST", "/v1/products", {"category": "/Lighting/"}, 422, "must be a category path"),
    ("unknown-category", "POST", "/v1/products", {"category": "no-such-category"}, 422,
     "unknown category 'no-such-category'"),
    ("null-name", "PATCH", "/v1/products/{sku}", {"name": None}, 422, "name cannot be null"),
    ("empty-update", "PATCH", "/v1/products/{sku}", {}, 422, "nothing to change"),
    ("missing-product", "PATCH", "/v1/products/NO-SUCH-SKU", {"name": "x"}, 404, "no product NO-SUCH-SKU"),
    ("bad-slug", "POST", "/v1/categories", {"slug": "Not A Slug", "name": "x"}, 422,
     "lower-case letters and digits in dash-separated words"),
    ("unknown-parent", "POST", "/v1/categories", {"slug": "x", "name": "x", "parent_id": MAX_CATEGORY_ID}, 422,
     "unknown parent category"),
    ("huge-category-id", "PATCH", f"/v1/categories/{2**64}", {"name": "x"}, 422, "less than or equal to"),
]


@pytest.mark.parametrize("case", BAD_WRITES, ids=[c[0] for c in BAD_WRITES])
async def test_bad_writes_are_refused_with_a_message(shop, people, idem, case):
    _, method, path, body, code, says = case
    if path == "/v1/products" and method == "POST":
        body = {**product_body(unique("T"), "Bad lamp"), **body}
    if "{sku}" in path:
        sku = unique("T")
        r = await shop.post("/v1/products", headers={**people["admin"].auth, **idem()},
                            json=product_body(sku, "Patch target"))
        assert r.status_code == 201, r.text
        path = path.replace("{sku}", sku)
    r = await shop.request(method, path, headers={**people["admin"].auth, **idem()}, json=body)
    assert r.status_code == code, r.text
    assert says in r.text, r.text


BAD_SEARCHES = [
    ("inverted-price-range", "/v1/search", {"price_min": 500, "price_max": 100}, 422, "price_min 500 is above"),
    ("negative-price", "/v1/search", {"price_min": -1}, 422, "greater than or equal to 0"),
    ("size-zero", "/v1/search", {"size": 0}, 422, "greater than or equal to 1"),
    ("size-too-big", "/v1/search", {"size": 101}, 422, "less than or equal to 100"),
    ("unknown-sort", "/v1/search", {"sort": "cheapest"}, 422, "relevance"),
    ("bad-category", "/v1/search", {"category": "Not/A Path"}, 422, "should match pattern"),
    ("not-a-bool", "/v1/search", {"in_stock": "maybe"}, 422, "valid boolean"),
    ("made-up-cursor", "/v1/search", {"cursor": "bm90LWEtY3Vyc29y"}, 400, "cursor is not one this search returned"),
    ("no-prefix", "/v1/search/suggest", {}, 422, "Field required"),
    ("blank-prefix", "/v1/search/suggest", {"prefix": "   "}, 422, "should match pattern"),
]


@pytest.mark.parametrize("case", BAD_SEARCHES, ids=[c[0] for c in BAD_SEARCHES])
async def test_bad_search_parameters_are_refused_with_a_message(shop, case):
    _, path, params, code, says = case
    r = await shop.get(path, params=params)
    assert r.status_code == code, r.text
    assert says in r.text, r.text
