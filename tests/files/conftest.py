"""The files context over the real stack: the object store, the outbox connector, throwaway ``files`` and
``catalog.products`` topics, a throwaway index with the search indexer, the image agent, and an edge
wired to all of them (in-process, its users in a throwaway schema, no saga workers: nothing here orders).

Product rows live in the public schema (where Debezium reads the outbox); the products made here are
deleted at the end, and every object they left in the bucket with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from catalog_pipeline import RunningIndexer, apply_outbox_connector, outbox_topic, throwaway_index, unique
from files_pipeline import MAX_BYTES, Person, RunningAgent, Shop
from pydantic import SecretStr

from shopflow.settings import Settings


@pytest.fixture(scope="session")
def files_settings(stack: Settings, pg_schema_factory) -> Settings:
    return stack.model_copy(update={
        "postgres_schema": pg_schema_factory("filestest"), "jwt_secret": SecretStr(secrets.token_urlsafe(48)),
        "rate_limit_per_user": 100_000, "rate_limit_anonymous": 100_000, "image_max_bytes": MAX_BYTES})


@pytest.fixture(scope="session")
def store(files_settings: Settings):
    from shopflow.files import ObjectStore

    return ObjectStore(files_settings)


@pytest.fixture(scope="module")
async def topics(stack: Settings, topic_factory, admin) -> AsyncIterator[tuple[str, str]]:
    """Throwaway topics standing for catalog.products and files (drained of the outbox's rows at the end)."""
    (await asyncio.to_thread(apply_outbox_connector, stack)).close()
    async with outbox_topic(stack, topic_factory, admin, "filesproducts") as products, \
            outbox_topic(stack, topic_factory, admin, "files") as files:
        yield products, files


@pytest.fixture(scope="module")
def test_index(stack: Settings) -> Iterator[str]:
    with throwaway_index(stack, "test-files-products") as search:
        yield search.index


@pytest.fixture(scope="module")
async def shop(files_settings: Settings, topics: tuple[str, str], test_index: str, store) -> AsyncIterator[Shop]:
    from shopflow.api.dependencies import EdgeTopics
    from shopflow.api.main import create_app
    from shopflow.catalog import NotFound
    from shopflow.topologies.catalog import CATALOG_PRODUCTS, FILES

    products_topic, files_topic = topics
    indexer = RunningIndexer.start(files_settings, topic=products_topic, index=test_index, name="files-indexer")
    agent = RunningAgent.start(files_settings, topic=files_topic, products_topic=products_topic)
    edge_topics = EdgeTopics(catalog_products=dataclasses.replace(CATALOG_PRODUCTS, name=products_topic),
                             files=dataclasses.replace(FILES, name=files_topic))
    app = create_app(files_settings, edge_topics, search_index=test_index)
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge") as client:
                admin, customer = await _person(app, client, admin=True), await _person(app, client)
                shop = Shop(client, app, files_settings, admin, customer, agent, indexer)
                yield shop
            for sku in sorted(shop.made):
                with contextlib.suppress(NotFound):
                    await app.state.edge.catalog.delete_product(sku)
                await asyncio.to_thread(store.delete_prefix, f"images/{sku}/")
    finally:
        agent.close()
        indexer.close()


async def _person(app: Any, client: httpx.AsyncClient, *, admin: bool = False) -> Person:
    from shopflow.api.users import make_admin

    email, password = f"u{uuid.uuid4().hex[:12]}@example.test", secrets.token_urlsafe(12)
    if admin:
        edge = app.state.edge
        async with edge.pool.acquire() as conn:
            await make_admin(conn, edge.codec, email=email, password=password)
    else:
        r = await client.post("/v1/auth/register", json={"email": email, "password": password})
        assert r.status_code == 201, r.text
    r = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    me = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {access}"})
    return Person(me.json()["id"], access)


@pytest.fixture
def new_product(shop: Shop) -> Callable[..., Any]:
    """``await new_product()``: a product of its own (deleted at the end of the module); its sku."""

    async def make(**kw: Any) -> str:
        sku = unique("IMG").upper()
        shop.made.add(sku)
        r = await shop.client.post("/v1/products", headers={**shop.admin.auth, **shop.idem()}, json={
            "sku": sku, "name": f"Camera {sku}", "description": "With pictures", "brand": "Acme",
            "price": {"amount_minor": 4999, "currency": "EUR"}, **kw})
        assert r.status_code == 201, r.text
        return sku

    return make


@pytest.fixture
def upload(shop: Shop) -> Callable[..., Any]:
    """``await upload(sku, data, content_type)``: issue a presigned POST through the edge and send ``data``
    straight to the store with it; ``(issued upload JSON, the store's response)``."""

    async def send(sku: str, data: bytes, content_type: str = "image/jpeg",
                   fields: dict[str, str] | None = None) -> tuple[dict, httpx.Response]:
        issued = await shop.client.post(f"/v1/admin/products/{sku}/images", headers={**shop.admin.auth, **shop.idem()},
                                        json={"content_type": content_type})
        assert issued.status_code == 201, issued.text
        body = issued.json()
        async with httpx.AsyncClient(timeout=30) as direct:
            answer = await direct.post(body["upload"]["url"], data={**body["upload"]["fields"], **(fields or {})},
                                       files={"file": ("photo.jpg", data, content_type)})
        return body, answer

    return send
