"""``shopflow search rebuild`` on the real servers: the rebuilt index is the live one's twin, searches
answer throughout, a red index is repaired, what arrives during the rebuild is in it, and a concrete index
from before the alias becomes the alias. Every test has its own topics and alias, never ``products``.

The catalog topic and the inventory changelog are written here directly (Avro catalog events with the
outbox's ``event_type`` header; the inventory table's JSON rows), as the outbox connector and the
inventory agent write them; the live indexer and stock feed run in threads where a test needs them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from catalog_pipeline import RunningIndexer, unique
from opensearchpy.exceptions import TransportError
from polling import eventually

from shopflow.catalog.search import SearchError, SearchQuery
from shopflow.catalog.search_index import ProductSearch, index_definition
from shopflow.schemas.catalog import ProductDeleted, ProductUpserted
from shopflow.schemas.records import Money
from shopflow.topologies.catalog import CATALOG_PRODUCTS

pytestmark = pytest.mark.integration


# -- the inputs -------------------------------------------------------------------------------------------


@dataclass
class Sources:
    """A throwaway catalog topic and inventory changelog, and what the test wrote to them."""

    products: str
    stock: str
    send: Callable[[str, bytes, bytes | None, list[tuple[str, bytes]]], None]
    encode: Callable[[Any], bytes]
    live: set[str] = field(default_factory=set)  # skus whose last event is an upsert
    in_stock: set[str] = field(default_factory=set)
    sent: Counter[str] = field(default_factory=Counter)  # records per topic

    def _send(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.send(topic, key.encode(), value, headers)
        self.sent[topic] += 1

    def upsert(self, sku: str, version: int, name: str = "Lamp") -> None:
        event = ProductUpserted(event_id=str(uuid.uuid4()), sku=sku, version=version, name=f"{name} {sku}",
                                description="", brand="Lumo", category="home/lighting",
                                price=Money(1000 + version, "EUR"), attributes={}, active=True,
                                occurred_at=datetime(2026, 12, 1, tzinfo=UTC))
        self._send(self.products, sku, self.encode(event), [("event_type", b"ProductUpserted")])
        self.live.add(sku)

    def delete(self, sku: str, version: int) -> None:
        event = ProductDeleted(event_id=str(uuid.uuid4()), sku=sku, version=version,
                               occurred_at=datetime(2026, 12, 1, tzinfo=UTC))
        self._send(self.products, sku, self.encode(event), [("event_type", b"ProductDeleted")])
        self.live.discard(sku)

    def stock_level(self, sku: str, on_hand: int, reserved: int) -> None:
        value = json.dumps({"sku": sku, "on_hand": on_hand, "reserved": reserved}).encode()
        self._send(self.stock, sku, value, [])
        (self.in_stock.add if on_hand > reserved else self.in_stock.discard)(sku)

    def catalog(self, prefix: str, products: int = 60) -> None:
        """Products, some updated, some deleted; stock for most, some sold out."""
        for i in range(products):
            sku = f"{prefix}-{i:03d}"
            self.upsert(sku, 1)
            if i % 3 == 0:
                self.upsert(sku, 2, name="Desk lamp")
            if i % 10 == 9:
                self.delete(sku, 3)
            elif i % 4 != 3:
                self.stock_level(sku, 5, 0)
                self.stock_level(sku, 5, 5 if i % 5 == 0 else 1)


@pytest.fixture
def sources(topic_factory, producer, codec) -> Sources:
    def send(topic: str, key: bytes, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        producer.produce(topic, key=key, value=value, headers=headers)
        producer.flush(10)

    return Sources(topic_factory("rebuild-catalog", partitions=3), topic_factory("rebuild-stock", partitions=2),
                   send, lambda event: codec.encode(CATALOG_PRODUCTS, event))


# -- the index --------------------------------------------------------------------------------------------


@pytest.fixture
def alias(stack) -> Iterator[str]:
    """A throwaway alias name; every index made for it (generations, a concrete one) deleted afterwards."""
    name = unique("test-rebuild")
    yield name
    search = ProductSearch.connect(stack, name)
    search.client.indices.delete(index=f"{name},{name}-*", ignore_unavailable=True, params={"ignore": 400})
    search.close()


def make_index(stack, name: str, *, under_alias: str | None = None, red: bool = False) -> None:
    """A concrete index from the definition, maybe under an alias, maybe red: its primary held to a node that
    does not exist stays unassigned, as a lost shard's does."""
    definition = index_definition()
    if red:
        definition["settings"]["index"]["routing"] = {"allocation": {"require": {"_name": "no-such-node"}}}
    if under_alias:
        definition["aliases"] = {under_alias: {}}
    search = ProductSearch.connect(stack, name)
    search.client.indices.create(index=name, body=definition, params={"wait_for_active_shards": "0"})
    search.close()


def snapshot(search: ProductSearch) -> dict[str, tuple[int, dict]]:
    """Every document behind the alias (products and stock children) with its version."""
    search.refresh()
    r = search.client.search(index=search.index, body={"query": {"match_all": {}}, "size": 1000, "version": True})
    return {h["_id"]: (h["_version"], h["_source"]) for h in r["hits"]["hits"]}


def answers(search: ProductSearch) -> tuple[set[str], set[str]]:
    """(the skus found, the skus found in stock): the edge's queries."""
    listed = search.search(SearchQuery(size=100))
    stocked = search.search(SearchQuery(size=100, in_stock=True))
    return {h.sku for h in listed.hits}, {h.sku for h in stocked.hits}


def rebuild(stack, alias: str, sources: Sources, **kw: Any):
    from shopflow.streams.search_rebuild import rebuild as run

    return run(stack, alias=alias, topic=sources.products, stock_topic=sources.stock, **kw)


# -- the live feeds ---------------------------------------------------------------------------------------


@contextmanager
def live_feeds(stack, sources: Sources, alias: str) -> Iterator[RunningIndexer]:
    """The search indexer and the stock feed, both writing through ``alias``."""
    from shopflow.streams.indexer import run_stock

    indexer = RunningIndexer.start(stack, topic=sources.products, index=alias, name="rebuild-live-indexer")
    stop = threading.Event()
    feed = threading.Thread(target=run_stock, args=(stack, stop), daemon=True, kwargs={
        "topic": sources.stock, "index": alias, "group_id": unique("test-rebuild-stock")})
    feed.start()
    try:
        yield indexer
    finally:
        stop.set()
        indexer.close()
        feed.join(30)


@dataclass
class Searcher:
    """Searches through the alias again and again in a thread, keeping every answer (or failure) and
    which generation answered."""

    search: ProductSearch
    answers: list[tuple[set[str], set[str]] | Exception] = field(default_factory=list)
    generations: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.answers.append(answers(self.search))
            except SearchError as exc:
                self.answers.append(exc)
            # Which generation answers, when one does: a bare probe of the test's, not the edge's query.
            with contextlib.suppress(TransportError):
                hit = self.search.client.search(index=self.search.index, body={"size": 1})["hits"]["hits"]
                self.generations.update(h["_index"] for h in hit)


@contextmanager
def searching(stack, alias: str) -> Iterator[Searcher]:
    searcher = Searcher(ProductSearch.connect(stack, alias))
    thread = threading.Thread(target=searcher.run, name="searcher", daemon=True)
    thread.start()
    try:
        yield searcher
    finally:
        searcher.stop.set()
        thread.join(30)
        searcher.search.close()


# -- the tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["alias", "concrete"])
def test_a_rebuild_reproduces_the_index_while_searches_keep_answering(stack, sources, alias, shape):
    # Given an index the live feeds filled: a fresh stack's alias, or a concrete index from before the alias
    if shape == "concrete":
        make_index(stack, alias)
    search = ProductSearch.connect(stack, alias)
    sources.catalog("RB")
    expected = (sources.live, sources.live & sources.in_stock)
    with live_feeds(stack, sources, alias) as indexer:
        eventually(lambda: search.generations().indices, what="the index ensured by the live feeds",
                   give_up=indexer.failure)
        eventually(lambda: answers(search) == expected, timeout_s=60, what="the live index filled",
                   give_up=indexer.failure)
        before = snapshot(search)
        old = search.generations()

        # When it is rebuilt while a reader searches all along
        with searching(stack, alias) as searcher:
            done = rebuild(stack, alias, sources)
            eventually(lambda: done.index in searcher.generations, what="a search answered by the new index")

        # Then every search answered, with every product and stock flag, from the old index and the new
        assert searcher.answers and all(a == expected for a in searcher.answers), [
            a for a in searcher.answers if a != expected][:3]
        assert searcher.generations == {*old.indices, done.index}
        # the same documents, versions and stock children; the alias on the new generation alone
        assert snapshot(search) == before
        assert search.generations().indices == (done.index,) and not search.generations().concrete
        assert done.replaced == old and old.concrete == (shape == "concrete")
        assert done.products.read == done.products.indexed + done.products.stale

        # and the live indexer goes on writing through the alias, into the new generation
        sources.upsert("RB-NEW", 1)
        eventually(lambda: search.get_document("RB-NEW"), what="a new product indexed after the rebuild",
                   give_up=indexer.failure)
    search.close()


@pytest.mark.parametrize("under_alias", [False, True], ids=["concrete", "alias"])
def test_a_red_index_is_repaired(stack, sources, alias, under_alias):
    # Given a red index (its primary unassigned, as after a lost shard) and the catalog on its topics
    make_index(stack, f"{alias}-initial" if under_alias else alias, under_alias=alias if under_alias else None,
               red=True)
    sources.catalog("RED", products=30)
    search = ProductSearch.connect(stack, alias)
    assert search.client.cluster.health(index=alias)["status"] == "red"
    with pytest.raises(SearchError):
        search.search(SearchQuery())

    # When it is rebuilt
    done = rebuild(stack, alias, sources)

    # Then searches answer, with every product, from a green index
    assert answers(search) == (sources.live, sources.live & sources.in_stock)
    assert search.client.cluster.health(index=alias)["status"] == "green"
    assert search.generations().indices == (done.index,)
    search.close()


def test_what_arrives_during_the_rebuild_is_in_the_new_index(stack, sources, alias):
    from shopflow.streams.search_rebuild import Phase

    # Given a catalog, and no live indexer: only the rebuild can put anything in the index
    sources.catalog("CU", products=20)

    def produce_meanwhile(state) -> None:
        if state.phase is Phase.CATCH_UP and "CU-LATE" not in sources.live:  # after the copy
            sources.upsert("CU-LATE", 1)
            sources.upsert("CU-000", 7, name="Floor lamp")
            sources.stock_level("CU-LATE", 2, 0)
        if state.phase is Phase.SWITCH and "CU-LAST" not in sources.live:  # after the catch-up, before the switch
            sources.upsert("CU-LAST", 1)
            sources.delete("CU-001", 9)
            sources.stock_level("CU-002", 0, 0)

    # When records arrive after the copy and after the catch-up
    done = rebuild(stack, alias, sources, on_progress=produce_meanwhile)

    # Then they are all in the new index
    search = ProductSearch.connect(stack, alias)
    assert "CU-LAST" in sources.live and "CU-001" not in sources.live
    assert answers(search) == (sources.live, sources.live & sources.in_stock)
    assert search.get_document("CU-000")["version"] == 7
    assert done.phase is Phase.DONE
    search.close()


def test_a_failed_rebuild_leaves_the_alias_and_no_index_behind(stack, sources, alias):
    from shopflow.streams.search_rebuild import RebuildError

    # Given a live alias
    search = ProductSearch.connect(stack, alias)
    search.ensure_index()
    before = search.generations()

    # When the rebuild cannot read its catalog topic
    with pytest.raises(RebuildError, match="does not exist"):
        rebuild(stack, alias, Sources(unique("no-such-topic"), sources.stock, sources.send, sources.encode))

    # Then the alias is as it was, and nothing was left beside it
    assert search.generations() == before
    assert set(search.client.indices.get(index=f"{alias}*")) == set(before.indices)
    search.close()


def test_ensuring_the_index_makes_one_first_generation_under_the_alias_even_when_racing(stack, alias):
    searches = [ProductSearch.connect(stack, alias) for _ in range(4)]
    threads = [threading.Thread(target=s.ensure_index) for s in searches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert searches[0].generations().indices == (f"{alias}-initial",)
    assert not searches[0].ensure_index()  # there already
    for s in searches:
        s.close()


def test_the_command_reports_what_it_did_and_says_what_to_do_when_it_cannot(stack, sources, alias):
    sources.catalog("CLI", products=10)
    command = [sys.executable, "-m", "shopflow.cli", "search", "rebuild", "--alias", alias,
               "--topic", sources.products, "--stock-topic", sources.stock]

    done = subprocess.run(command, capture_output=True, text=True)
    missing = subprocess.run([*command[:-4], "--topic", unique("no-such-topic")], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert f"{alias} -> {alias}-" in done.stdout
    assert [line.split()[:3] for line in done.stdout.splitlines()[-2:]] == [  # source, read, indexed
        [topic, str(sources.sent[topic]), str(sources.sent[topic])] for topic in (sources.products, sources.stock)]
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "shopflow topics apply" in missing.stderr
    assert "Traceback" not in missing.stderr
