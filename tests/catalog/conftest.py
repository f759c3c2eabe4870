"""Fixtures of the catalog tests: the migrated database and the outbox connector, a catalog writing
to a throwaway topic (the outbox routes by aggregatetype, so the real connector carries it there),
a throwaway index, and the search indexer running over that topic in a background thread
(the pieces come from ``tests/catalog_pipeline.py``, shared with the edge's catalog route tests)."""

from __future__ import annotations

import pytest
from catalog_pipeline import RunningIndexer, apply_outbox_connector, outbox_topic, throwaway_index


@pytest.fixture(scope="session")
def connect_client(stack):
    """The outbox connector applied, after the migrations (its publication needs the outbox table)."""
    client = apply_outbox_connector(stack)
    yield client
    client.close()


@pytest.fixture(scope="session")
async def catalog_topic(stack, connect_client, topic_factory, admin):
    """A fresh topic standing for catalog.products, with its dead-letter topic (no auto-creation here)."""
    async with outbox_topic(stack, topic_factory, admin, "catalog") as topic:
        yield topic


@pytest.fixture(scope="session")
async def catalog(stack, codec, connect_client, catalog_topic):
    from shopflow.catalog import Catalog

    c = await Catalog.open(stack, codec, topic=catalog_topic, pool_size=5)
    yield c
    await c.close()


@pytest.fixture(scope="session")
def search(stack):
    with throwaway_index(stack, "test-products") as s:
        yield s


@pytest.fixture(scope="session")
def indexer(stack, search, catalog_topic):
    running = RunningIndexer.start(stack, topic=catalog_topic, index=search.index)
    yield running
    running.close()
