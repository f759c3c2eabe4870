"""The in-stock filter follows the inventory table's changelog: units arriving and selling out."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime

import pytest
from catalog_pipeline import throwaway_index, unique
from polling import eventually

from shopflow.catalog.search import SearchQuery
from shopflow.catalog.search_index import Upsert, product_document
from shopflow.schemas.catalog import ProductUpserted
from shopflow.schemas.records import Money

pytestmark = pytest.mark.integration


def test_in_stock_follows_the_inventory_changelog(stack, topic_factory, producer):
    from shopflow.streams.indexer import run_stock

    with throwaway_index(stack, "test-stock") as search:
        changelog = topic_factory("inventory-changelog", partitions=6)
        sku = f"SKU-{uuid.uuid4().hex[:6]}"
        event = ProductUpserted(event_id=str(uuid.uuid4()), sku=sku, version=1, name="Feed lamp", description="",
                                brand="Lumo", category="home/lighting", price=Money(2500, "EUR"), attributes={},
                                active=True, occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
        search.apply([Upsert(sku, 1, product_document(event))])
        stop = threading.Event()
        feed = threading.Thread(target=run_stock, args=(stack, stop), daemon=True, kwargs={
            "topic": changelog, "index": search.index, "group_id": unique("test-stock-feed"), "refresh": True})
        feed.start()

        def in_stock() -> bool:
            return [h.sku for h in search.search(SearchQuery(in_stock=True)).hits] == [sku]

        def out_of_stock() -> bool:
            return [h.sku for h in search.search(SearchQuery(in_stock=False)).hits] == [sku]

        def stock_record(on_hand: int, reserved: int) -> None:
            producer.produce(changelog, key=sku.encode(),
                             value=json.dumps({"sku": sku, "on_hand": on_hand, "reserved": reserved}).encode())
            producer.flush(10)

        try:
            # Given a listed product, When units arrive, Then it is in stock; When the last is reserved, Then not.
            stock_record(3, 0)
            eventually(in_stock, what="the sku to show as in stock")
            stock_record(3, 3)
            eventually(out_of_stock, what="the sku to show as out of stock")
        finally:
            stop.set()
            feed.join(10)
