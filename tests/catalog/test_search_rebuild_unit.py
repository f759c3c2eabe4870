"""The pure parts of the index rebuild: generation names, the alias switch's actions, the stock feed's
records and their bulk writes (no servers; the rebuild itself is in test_search_rebuild.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opensearchpy.exceptions import RequestError, TransportError

from shopflow.catalog.search import InvalidQuery
from shopflow.catalog.search_index import (
    Generations,
    Outcome,
    ProductSearch,
    StockLevel,
    generation_name,
    switch_actions,
)
from shopflow.streams.indexer import stock_level
from shopflow.tables.values import RESERVATION_SEPARATOR


def test_generation_names_are_lower_case_and_sort_by_when_they_were_made():
    at = datetime(2026, 12, 1, 21, 5, 9, 123456, tzinfo=UTC)
    names = [generation_name("products", at + timedelta(milliseconds=ms)) for ms in (0, 1, 1000, 3_600_000)]
    assert names[0] == "products-20261201-210509-123"
    assert names == sorted(names) and len(set(names)) == 4
    assert all(n == n.lower() for n in names)


def test_switching_an_alias_moves_it_off_every_old_generation_in_one_call():
    current = Generations("products", ("products-20261201-200000-000", "products-initial"))
    assert switch_actions(current, "products-20261201-210000-000") == [
        {"add": {"index": "products-20261201-210000-000", "alias": "products"}},
        {"remove": {"index": "products-20261201-200000-000", "alias": "products"}},
        {"remove": {"index": "products-initial", "alias": "products"}},
    ]


def test_a_concrete_index_of_the_alias_name_is_removed_in_the_same_call():
    current = Generations("products", ("products",), concrete=True)
    assert switch_actions(current, "products-20261201-210000-000") == [
        {"add": {"index": "products-20261201-210000-000", "alias": "products"}},
        {"remove_index": {"index": "products"}},
    ]


def test_nothing_there_yet_only_adds_the_alias():
    assert switch_actions(Generations("products"), "products-x") == [{"add": {"index": "products-x",
                                                                              "alias": "products"}}]


@dataclass
class ChangelogRecord:
    """Stands for a confluent-kafka Message of the inventory table's changelog."""

    _key: bytes | None
    _value: bytes | None
    _offset: int = 41

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return "inventory-changelog"

    def partition(self) -> int:
        return 0


def stock_record(key: str, value: Any, offset: int = 41) -> ChangelogRecord:
    return ChangelogRecord(key.encode(), None if value is None else json.dumps(value).encode(), offset)


def test_a_sku_record_is_its_available_units_versioned_by_offset_plus_one():
    record = stock_record("LAMP-1", {"sku": "LAMP-1", "on_hand": 7, "reserved": 2}, offset=41)
    assert stock_level(record) == StockLevel("LAMP-1", 42, 5)  # type: ignore[arg-type]


def test_reservation_rows_tombstones_and_bad_records_give_no_stock():
    reservation = stock_record(f"order-1{RESERVATION_SEPARATOR}LAMP-1", {"quantity": 1})
    assert stock_level(reservation) is None  # type: ignore[arg-type]
    assert stock_level(stock_record("LAMP-1", None)) is None  # type: ignore[arg-type]
    assert stock_level(stock_record("LAMP-1", {"on_hand": "many"})) is None  # type: ignore[arg-type]


class BulkClient:
    """Stands for the OpenSearch client's bulk call: keeps the body, answers each item with a status."""

    def __init__(self, statuses: list[int]):
        self.statuses = statuses
        self.body: list[dict[str, Any]] = []

    def bulk(self, body: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        self.body = body
        return {"items": [{"index": {"_id": "x", "status": s, "error": {"reason": "r"}}} for s in self.statuses]}


def test_stock_levels_go_in_bulk_as_routed_children_with_external_versions():
    client = BulkClient([201, 409])
    search = ProductSearch(client, "products")  # type: ignore[arg-type]

    results = search.apply([StockLevel("LAMP-1", 42, 5), StockLevel("LAMP-2", 3, 0)])

    assert client.body[:2] == [
        {"index": {"_index": "products", "_id": "stock-LAMP-1", "routing": "LAMP-1", "version": 42,
                   "version_type": "external"}},
        {"relation": {"name": "stock", "parent": "LAMP-1"}, "available": 5},
    ]
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.STALE]


class SwitchingClient:
    """Stands for the client's count call on an alias whose generation is deleted under the first query."""

    def __init__(self, failure: Exception):
        self.failure: Exception | None = failure
        self.calls = 0

    def count(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        return {"count": 3}


def test_a_query_whose_index_went_away_under_it_is_asked_again():
    client = SwitchingClient(TransportError(503, "search_phase_execution_exception", {}))
    assert ProductSearch(client, "products").count() == 3  # type: ignore[arg-type]
    assert client.calls == 2


def test_a_refused_query_is_not_asked_again():
    client = SwitchingClient(RequestError(400, "parsing_exception", {}))
    with pytest.raises(InvalidQuery):
        ProductSearch(client, "products").count()  # type: ignore[arg-type]
    assert client.calls == 1
