"""The catalog end to end over the real stack: PostgreSQL write + outbox row -> Debezium -> topic ->
search indexer -> OpenSearch (and the Redis product cache it invalidates)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from catalog_pipeline import unique
from polling import eventually, eventually_async

from shopflow.catalog import Conflict, InvalidInput, NotFound, ProductInput
from shopflow.catalog.cache import product_cache_key
from shopflow.catalog.search import SearchQuery
from shopflow.connectors.apply import CONNECTORS_DIR, load
from shopflow.schemas.catalog import ProductUpserted
from shopflow.schemas.records import Money
from shopflow.streams.client import iter_topic
from shopflow.topologies.catalog import CATALOG_PRODUCTS

pytestmark = pytest.mark.integration


def product(sku: str, **kw) -> ProductInput:
    base = dict(sku=sku, name="Aurora Wireless Headphones", description="Over-ear, noise cancelling, 30 h battery",
                brand="Aurora", price_minor=12999, currency="EUR", attributes={"color": "black"})
    return ProductInput(**{**base, **kw})


def indexed(search, sku: str, version: int):
    """A check for eventually: ``sku`` is visible to search (not only to a real-time get) at ``version``."""
    return lambda: search.scan_versions([sku]).get(sku) == version


async def test_a_product_written_through_the_catalog_becomes_searchable(catalog, search, indexer):
    sku = unique("T")
    created = await catalog.create_product(product(sku, name=f"Aurora Headphones {sku}"))

    await asyncio.to_thread(eventually, indexed(search, sku, created.version), 60, what=f"{sku} searchable",
                            give_up=indexer.failure)

    [hit] = search.search(SearchQuery(text=f"headphones {sku}")).hits
    assert created.version == 1
    assert (hit.sku, hit.name, hit.brand, hit.price_minor, hit.currency, hit.attributes, hit.version) == (
        sku, f"Aurora Headphones {sku}", "Aurora", 12999, "EUR", {"color": "black"}, 1)


async def test_updates_and_deletes_follow_in_the_index(catalog, search, indexer):
    sku = unique("T")
    await catalog.create_product(product(sku))
    updated = await catalog.update_product(sku, {"name": f"Borealis Speaker {sku}", "price_minor": 4999})
    assert updated.version == 2

    await asyncio.to_thread(eventually, indexed(search, sku, 2), 60, what="update indexed", give_up=indexer.failure)
    doc = search.get_document(sku)
    assert (doc["name"], doc["price_minor"], doc["_version"]) == (f"Borealis Speaker {sku}", 4999, 2)

    assert await catalog.delete_product(sku) == 3
    await asyncio.to_thread(eventually, lambda: sku not in search.scan_versions([sku]), 60, what="delete indexed",
                            give_up=indexer.failure)
    assert search.get_document(sku) is None
    assert search.search(SearchQuery(text=f"Borealis Speaker {sku}")).hits == []
    assert await catalog.get_product(sku) is None


async def test_a_deleted_sku_created_again_continues_its_version(catalog, search, indexer):
    sku = unique("T")
    await catalog.create_product(product(sku))
    await catalog.delete_product(sku)
    again = await catalog.create_product(product(sku, name=f"Reborn {sku}"))

    # Version 3, above the delete's 2: the index takes it although it still remembers the delete.
    assert again.version == 3
    await asyncio.to_thread(eventually, indexed(search, sku, 3), 60, what="re-created sku indexed",
                            give_up=indexer.failure)


async def test_the_product_cache_reads_through_and_the_indexer_invalidates_it(catalog, search, indexer):
    sku = unique("T")
    await catalog.create_product(product(sku))
    await asyncio.to_thread(eventually, indexed(search, sku, 1), 60, what="created", give_up=indexer.failure)

    first = await catalog.get_product(sku)
    cached = await catalog.cache.client.get(product_cache_key(sku))
    assert first.version == 1 and cached.startswith(b"1|")

    await catalog.update_product(sku, {"price_minor": 100})
    # Until the event is applied the cache may still answer version 1; after, never again.
    await asyncio.to_thread(eventually, indexed(search, sku, 2), 60, what="update indexed", give_up=indexer.failure)
    assert (await catalog.get_product(sku)).price_minor == 100
    assert (await catalog.cache.client.get(product_cache_key(sku))).startswith(b"2|")
    assert 0 < await catalog.cache.client.pttl(product_cache_key(sku)) <= catalog.cache.ttl_ms


async def test_a_reader_that_loaded_an_old_version_cannot_put_it_back_after_the_fence(catalog, stack):
    import redis

    from shopflow.catalog.cache import invalidate_cached_products

    sku = unique("T")
    await catalog.create_product(product(sku))
    stale = await catalog.load_product(sku)  # a slow reader holds version 1...
    await catalog.update_product(sku, {"name": "Newer"})
    client = redis.Redis.from_url(stack.redis_url)
    try:
        invalidate_cached_products(client, {sku: 2})  # ...the indexer fences version 2...
    finally:
        client.close()
    await catalog.cache.fill(stale)

    # ...and its late fill of version 1 was refused: the next read goes to PostgreSQL.
    assert (await catalog.get_product(sku)).name == "Newer"


async def test_a_late_or_duplicated_event_does_not_overwrite_a_newer_document(
        catalog, search, indexer, catalog_topic, codec, stack):
    from confluent_kafka import Producer

    sku = unique("T")
    await catalog.create_product(product(sku, name="First"))
    await catalog.update_product(sku, {"name": "Second"})
    await asyncio.to_thread(eventually, indexed(search, sku, 2), 60, what="v2 indexed", give_up=indexer.failure)

    # Version 1 again, as a redelivery or a replay would bring it, straight onto the topic.
    late = ProductUpserted(event_id=str(uuid.uuid4()), sku=sku, version=1, name="First (late)", description="",
                           price=Money(1, "EUR"), active=True, occurred_at=datetime.now(UTC))
    value = codec.encode(CATALOG_PRODUCTS, late)
    # murmur2 as Connect's Java producer: the late event lands on the sku's partition, behind v2.
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers, "partitioner": "murmur2_random"})
    producer.produce(catalog_topic, key=sku.encode(), value=value, headers=[("event_type", b"ProductUpserted")])
    assert producer.flush(10) == 0

    seen = await asyncio.to_thread(
        eventually, lambda: any(b.versions.get(sku) == 1 and b.stale for b in indexer.batches), 60,
        what="late event consumed", give_up=indexer.failure)
    assert seen
    doc = search.get_document(sku)
    assert (doc["name"], doc["version"]) == ("Second", 2)


async def test_a_poison_record_is_dead_lettered_and_the_indexer_goes_on(catalog, search, indexer, catalog_topic,
                                                                        stack, consume):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": stack.bootstrap_servers})
    producer.produce(catalog_topic, key=b"poison", value=b"\x07not avro at all")
    assert producer.flush(10) == 0
    sku = unique("T")
    await catalog.create_product(product(sku))

    await asyncio.to_thread(eventually, indexed(search, sku, 1), 60, what="indexed after poison",
                            give_up=indexer.failure)
    [letter] = await asyncio.to_thread(consume, f"{catalog_topic}.dlq", 1)
    headers = dict(letter.headers())
    assert letter.value() == b"\x07not avro at all"
    assert (headers["dlq.topic"], headers["dlq.reason"]) == (catalog_topic.encode(), b"bad-magic-byte")


async def test_a_category_move_reannounces_the_products_of_its_subtree(catalog, search, indexer):
    root_a = await catalog.create_category(unique("a").lower(), "Old home")
    root_b = await catalog.create_category(unique("b").lower(), "New home")
    audio = await catalog.create_category("audio", "Audio", root_a.id)
    phones = await catalog.create_category("headphones", "Headphones", audio.id)
    sku = unique("T")
    await catalog.create_product(product(sku, category=phones.path))

    moved = await catalog.update_category(audio.id, parent_id=root_b.id)

    assert moved.path == f"{root_b.path}/audio"
    assert (await catalog.get_category(phones.id)).path == f"{root_b.path}/audio/headphones"
    await asyncio.to_thread(eventually, indexed(search, sku, 2), 60, what="re-announced", give_up=indexer.failure)
    in_b = search.search(SearchQuery(category=root_b.path, size=100)).hits
    in_a = search.search(SearchQuery(category=root_a.path, size=100)).hits
    assert [h.category for h in in_b if h.sku == sku] == [f"{root_b.path}/audio/headphones"]
    assert not [h for h in in_a if h.sku == sku]


async def test_bad_writes_are_refused_with_a_clear_error_and_write_nothing(catalog):
    root = await catalog.create_category(unique("c").lower(), "Root")
    child = await catalog.create_category("child", "Child", root.id)
    sku = unique("T")
    outbox_before = await catalog.pool.fetchval("SELECT count(*) FROM outbox WHERE aggregateid = $1", sku)

    with pytest.raises(InvalidInput, match="unknown category"):
        await catalog.create_product(product(sku, category=f"{root.path}/nope"))
    with pytest.raises(InvalidInput, match="negative"):
        await catalog.create_product(product(sku, price_minor=-1))
    with pytest.raises(InvalidInput, match="ISO 4217"):
        await catalog.create_product(product(sku, currency="EURO"))
    assert await catalog.load_product(sku) is None
    assert await catalog.pool.fetchval("SELECT count(*) FROM outbox WHERE aggregateid = $1", sku) == outbox_before

    await catalog.create_product(product(sku, category=child.path))
    with pytest.raises(Conflict, match="already exists"):
        await catalog.create_product(product(sku))
    with pytest.raises(InvalidInput, match="cannot update sku"):
        await catalog.update_product(sku, {"sku": "other"})
    with pytest.raises(NotFound):
        await catalog.update_product(unique("missing"), {"name": "x"})
    with pytest.raises(Conflict, match="subcategories"):
        await catalog.delete_category(root.id)
    with pytest.raises(Conflict, match="still has 1 product"):
        await catalog.delete_category(child.id)
    with pytest.raises(InvalidInput, match="own subtree"):
        await catalog.update_category(root.id, parent_id=child.id)
    with pytest.raises(Conflict, match="already exists"):
        await catalog.create_category("child", "Again", root.id)

    # A change that changes nothing is not an event.
    same = await catalog.update_product(sku, {"name": "Aurora Wireless Headphones"})
    assert same.version == 1
    assert await catalog.pool.fetchval("SELECT count(*) FROM outbox WHERE aggregateid = $1", sku) == 1

    await catalog.delete_product(sku)
    await catalog.delete_category(child.id)
    await catalog.delete_category(root.id)


async def test_a_connector_restart_loses_and_duplicates_nothing_in_the_index(
        catalog, search, indexer, connect_client, catalog_topic, stack, codec):
    skus = [unique("R") for _ in range(20)]
    for sku in skus:
        await catalog.create_product(product(sku, name=f"Restart {sku}"))

    slot = load(CONNECTORS_DIR / "catalog-outbox.json").config["slot.name"]
    before = await _slot_holder(catalog, slot)
    assert before is not None, f"the connector is not streaming (slot {slot} inactive) before the test"
    restarted = asyncio.Event()
    rounds = 0

    async def writes() -> None:
        # Keep writing until the restarted connector streams again, so changes land before, during
        # and after the restart.
        nonlocal rounds
        while not restarted.is_set() or rounds < 3:
            for sku in skus:
                await catalog.update_product(sku, {"price_minor": 1000 + rounds})
            rounds += 1
            # Pacing, not waiting for anything: a round every 0.2 s spreads the writes across the restart
            # without piling thousands of versions onto the topic.
            await asyncio.sleep(0.2)

    async def restarts() -> None:
        try:
            await asyncio.to_thread(connect_client.restart, "catalog-outbox")
            # Connect may still report the old task RUNNING for a moment: the restart has happened when
            # a new replication connection holds the slot.
            await _wait_streaming_again(catalog, slot, before)
            await asyncio.to_thread(connect_client.wait_running, "catalog-outbox", 60)
        finally:
            restarted.set()

    await asyncio.gather(writes(), restarts())
    last = 1 + rounds
    expected = {sku: last for sku in skus}

    got = await asyncio.to_thread(
        eventually, lambda: (v := search.scan_versions(skus)) == expected and v, 120,
        what="every sku at its last version", give_up=indexer.failure)

    assert got == expected
    assert all(search.get_document(s)["_version"] == last for s in skus)
    assert {h.sku for h in search.search(SearchQuery(text="Restart", price_min=999 + rounds, price_max=999 + rounds,
                                                     size=100)).hits} >= set(skus)
    # Every (sku, version) reached the topic at least once; redelivered copies are allowed there.
    seen = _topic_versions(stack, codec, catalog_topic, set(skus))
    assert {(s, v) for s in skus for v in range(1, last + 1)} <= seen


async def _slot_holder(catalog, slot: str):
    """(pid, backend_start) of the walsender holding the connector's replication slot, or None."""
    return await catalog.pool.fetchrow(
        "SELECT a.pid, a.backend_start FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid "
        "WHERE s.slot_name = $1", slot)


async def _wait_streaming_again(catalog, slot: str, before) -> None:
    """Until a new walsender holds the slot. RUNNING in Connect's status comes before that: it is
    only the task object. Two restarts a second apart once left the old task's replication
    connection open for good (Debezium 3.2.7), and the new task then retried forever on "slot is
    active for PID ...", which stops CDC for everyone on this stack; if that happens again, end the
    stale connection so the stack recovers, and fail."""
    async def new_holder() -> bool:
        holder = await _slot_holder(catalog, slot)
        return holder is not None and holder["pid"] != before["pid"]

    try:
        await eventually_async(new_holder, 90, what=f"a new replication connection on slot {slot}")
    except AssertionError:
        await catalog.pool.execute("SELECT pg_terminate_backend($1)", before["pid"])
        raise AssertionError(f"after the restart the old replication connection (pid {before['pid']}) still held "
                             f"slot {slot}; it was terminated so CDC can resume") from None


def _topic_versions(stack, codec, topic: str, skus: set[str]) -> set[tuple[str, int]]:
    return {(m.key().decode(), codec.decode(m.value())["version"])
            for m in iter_topic(stack.bootstrap_servers, topic) if m.key() and m.key().decode() in skus}


async def test_products_and_categories_are_listed_in_order(catalog):
    root = await catalog.create_category(unique("l").lower(), "Listing")
    child = await catalog.create_category("child", "Child", root.id)
    prefix = unique("L")
    for i in (3, 1, 2):
        await catalog.create_product(product(f"{prefix}-{i}", category=child.path))
    await catalog.delete_product(f"{prefix}-2")

    listed = await catalog.list_products(after=f"{prefix}-0", limit=500)
    mine = [p.sku for p in listed if p.sku.startswith(prefix)]
    tree = [c.path for c in await catalog.list_categories() if c.path.startswith(root.path)]

    assert mine == [f"{prefix}-1", f"{prefix}-3"]  # sku order, deleted ones left out
    assert (await catalog.list_products(after=f"{prefix}-1", limit=1))[0].sku == f"{prefix}-3"
    assert tree == [root.path, child.path]
