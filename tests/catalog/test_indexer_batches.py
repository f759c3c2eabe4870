"""The search indexer's batch step: ordering by version, duplicates, poison and refused documents.

The unit tests run ``Indexer.process_batch`` on hand-made records with an in-memory registry and a
fake index; the integration ones run it against a real OpenSearch index, where external versioning
does the refusing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from catalog_pipeline import throwaway_index

from shopflow.catalog.search import SearchError, SearchQuery
from shopflow.catalog.search_index import Delete, Outcome, Upsert, WriteResult
from shopflow.schemas.catalog import ProductDeleted, ProductUpserted
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.records import Money
from shopflow.streams.indexer import Indexer
from shopflow.topologies.catalog import CATALOG_PRODUCTS

TOPIC = "catalog.products"


class MemoryRegistry:
    """Stands for SchemaRegistry: ids handed out in order, schemas kept by id."""

    def __init__(self) -> None:
        self.by_id: dict[int, dict] = {}

    def register(self, subject: str, schema: dict) -> int:
        for sid, known in self.by_id.items():
            if known is schema:
                return sid
        self.by_id[len(self.by_id) + 1] = schema
        return len(self.by_id)

    def schema_by_id(self, schema_id: int) -> dict | None:
        return self.by_id.get(schema_id)


@dataclass
class Record:
    """Stands for a confluent-kafka Message."""

    _value: bytes | None
    _key: bytes | None = None
    _headers: list[tuple[str, bytes]] = field(default_factory=list)
    _offset: int = 0

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


class FakeSearch:
    def __init__(self, outcomes: dict[tuple[str, int], WriteResult] | None = None, fail: bool = False):
        self.writes: list = []
        self.outcomes = outcomes or {}
        self.fail = fail

    def apply(self, writes, *, refresh=False):
        if self.fail:
            raise SearchError("OpenSearch unreachable")
        self.writes += writes
        return [self.outcomes.get((w.sku, w.version), WriteResult(Outcome.APPLIED)) for w in writes]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list]] = []

    def produce(self, topic, key=None, value=None, headers=None, on_delivery=None):
        self.sent.append((topic, key, value, headers))

    def flush(self, timeout=None) -> int:
        return 0


def upserted(sku: str, version: int, name: str = "Lamp") -> ProductUpserted:
    return ProductUpserted(event_id=str(uuid.uuid4()), sku=sku, version=version, name=name, description="",
                           brand=None, category="home/lighting", price=Money(100 * version, "EUR"),
                           active=True, occurred_at=datetime(2026, 1, 1, tzinfo=UTC))


def deleted(sku: str, version: int) -> ProductDeleted:
    return ProductDeleted(event_id=str(uuid.uuid4()), sku=sku, version=version,
                          occurred_at=datetime(2026, 1, 1, tzinfo=UTC))


def record(codec: AvroCodec, event, offset: int = 0, event_type: str | None = None) -> Record:
    value = codec.encode(CATALOG_PRODUCTS, event)
    kind = event_type or event.AVRO_NAME.rsplit(".", 1)[1]
    return Record(value, event.sku.encode(), [("event_type", kind.encode()), ("event_id", event.event_id.encode())],
                  offset)


@pytest.fixture
def memory_codec() -> AvroCodec:
    return AvroCodec(MemoryRegistry())  # type: ignore[arg-type]


def test_upserts_and_deletes_become_versioned_writes_in_order(memory_codec):
    search, producer = FakeSearch(), FakeProducer()
    indexer = Indexer(search, memory_codec, dead_letters=producer)  # type: ignore[arg-type]

    result = indexer.process_batch([record(memory_codec, upserted("A", 1)), record(memory_codec, upserted("A", 2)),
                                    record(memory_codec, deleted("B", 4))])

    assert [(type(w).__name__, w.sku, w.version) for w in search.writes] == [
        ("Upsert", "A", 1), ("Upsert", "A", 2), ("Delete", "B", 4)]
    assert search.writes[1].document["price_minor"] == 200
    assert (result.applied, result.stale, result.dead_letters, result.versions) == (3, 0, [], {"A": 2, "B": 4})
    assert producer.sent == []


def test_stale_writes_are_counted_not_dead_lettered(memory_codec):
    search = FakeSearch({("A", 1): WriteResult(Outcome.STALE, "version conflict")})
    result = Indexer(search, memory_codec, dead_letters=FakeProducer()).process_batch(  # type: ignore[arg-type]
        [record(memory_codec, upserted("A", 1))])
    assert (result.applied, result.stale, result.dead_letters) == (0, 1, [])


def test_poison_unknown_types_and_refused_documents_go_to_the_dead_letter_topic(memory_codec):
    search = FakeSearch({("C", 1): WriteResult(Outcome.REJECTED, "mapper_parsing_exception: too big")})
    producer = FakeProducer()
    batch = [
        Record(b"\x07garbage", b"X", _offset=10),
        Record(None, b"Y", _offset=11),
        record(memory_codec, upserted("Z", 1), offset=12, event_type="PriceChanged"),
        record(memory_codec, deleted("D", 1), offset=13, event_type="ProductUpserted"),  # fields missing
        record(memory_codec, upserted("C", 1), offset=14),
        record(memory_codec, upserted("OK", 1), offset=15),
    ]

    result = Indexer(search, memory_codec, dead_letters=producer).process_batch(batch)  # type: ignore[arg-type]

    reasons = [dict(h)["dlq.reason"] for _, _, _, h in producer.sent]
    assert reasons == [b"bad-magic-byte", b"null-value", b"not-a-catalog-event", b"not-a-catalog-event",
                       b"index-rejected"]
    assert {t for t, *_ in producer.sent} == {"catalog.products.dlq"}
    assert [dict(h)["dlq.offset"] for *_, h in producer.sent] == [b"10", b"11", b"12", b"13", b"14"]
    assert producer.sent[0][2] == b"\x07garbage"  # the original bytes, for a replay once fixed
    assert result.applied == 1 and result.versions == {"OK": 1}


def test_a_failing_index_raises_so_the_batch_is_retried_and_nothing_is_sent(memory_codec):
    producer = FakeProducer()
    indexer = Indexer(FakeSearch(fail=True), memory_codec, dead_letters=producer)  # type: ignore[arg-type]
    with pytest.raises(SearchError):
        indexer.process_batch([Record(b"\x07garbage"), record(memory_codec, upserted("A", 1))])
    assert producer.sent == []


def test_without_the_header_the_type_comes_from_the_value(memory_codec):
    search = FakeSearch()
    up, down = record(memory_codec, upserted("A", 1)), record(memory_codec, deleted("B", 2))
    up._headers, down._headers = [], []
    Indexer(search, memory_codec, dead_letters=FakeProducer()).process_batch([up, down])  # type: ignore[arg-type]
    assert [type(w) for w in search.writes] == [Upsert, Delete]


# -- against a real index --------------------------------------------------------------------------


@pytest.fixture
def real_index(stack):
    with throwaway_index(stack, "test-versions") as search:
        yield search


@pytest.mark.integration
def test_the_index_keeps_the_newest_version_whatever_the_arrival_order(real_index, codec):
    indexer = Indexer(real_index, codec, dead_letters=FakeProducer(), refresh="wait_for")  # type: ignore[arg-type]
    r = lambda e: record(codec, e)  # noqa: E731

    first = indexer.process_batch([r(upserted("A", 3, "three")), r(upserted("A", 2, "two")),
                                   r(upserted("B", 1, "b one"))])
    again = indexer.process_batch([r(upserted("A", 3, "three, redelivered")), r(upserted("A", 1, "one"))])

    assert (first.applied, first.stale, again.applied, again.stale) == (2, 1, 0, 2)
    doc = real_index.get_document("A")
    assert (doc["name"], doc["version"], doc["_version"]) == ("three", 3, 3)

    gone = indexer.process_batch([r(deleted("A", 4)), r(upserted("A", 3, "three, late after the delete"))])
    assert (gone.applied, gone.stale) == (1, 1)
    assert real_index.get_document("A") is None  # the delete's version is remembered (gc_deletes)
    assert {h.sku for h in real_index.search(SearchQuery(size=10)).hits} == {"B"}

    back = indexer.process_batch([r(upserted("A", 5, "five"))])
    assert back.applied == 1 and real_index.get_document("A")["name"] == "five"
