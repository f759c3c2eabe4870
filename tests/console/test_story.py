"""One order's story (console/story.py): where its records are looked for, and in what order they are told.

Unit tests on given records; the story read from the real saga's topics is in test_saga.py."""

from __future__ import annotations

import pytest

from shopflow.console.story import (
    ORDER_KEYED,
    BadOrderId,
    checked_order_id,
    facts_of,
    in_story_order,
    keyed_scans,
    partition_of,
    skus_in,
    stock_scan,
)
from shopflow.taps.records import TapRecord
from shopflow.topologies.catalog import STOCK_REQUESTS, Topic


def tap_record(topic: str, record: str, at: int, offset: int = 0, value: dict | None = None) -> TapRecord:
    return TapRecord(topic=topic, partition=0, offset=offset, timestamp_ms=at, key="o-1", headers=[],
                     value=value or {}, value_format="avro", schema=f"shopflow.x.{record}")


def test_a_key_lands_on_the_partition_kafkas_java_partitioner_picks():
    # From Kafka's UtilsTest: murmur2("21") == -973932308; the partition is its positive part modulo the count.
    huge = Topic("t", "k", (), 2**31 - 1, "a topic with as many partitions as an int holds")

    assert partition_of("21", huge) == (-973932308 & 0x7FFFFFFF) % (2**31 - 1)


def test_an_order_is_looked_for_in_one_partition_of_each_order_keyed_topic_by_its_key():
    scans = keyed_scans("o-1", 1_000, None)

    assert [s.topic for s in scans] == list(ORDER_KEYED)
    assert all(s.partitions == (partition_of("o-1", s.topic),) for s in scans)
    assert {s.where for s in scans} == {'key == "o-1"'}


def test_its_stock_requests_are_looked_for_in_the_partitions_of_its_skus_only():
    scan = stock_scan("o-1", ["A", "B", "A"], 1_000, 2_000)

    assert scan is not None and scan.topic is STOCK_REQUESTS
    assert scan.partitions == tuple(sorted({partition_of("A", STOCK_REQUESTS), partition_of("B", STOCK_REQUESTS)}))
    assert scan.where == 'has(value.order_id) && value.order_id == "o-1"'
    assert stock_scan("o-1", [], 1_000, None) is None


def test_the_skus_come_from_the_orders_own_lines():
    records = [tap_record("orders", "OrderPlaced", 1, value={"lines": [{"sku": "A"}, {"sku": "B"}]}),
               tap_record("order-commands", "PlaceOrder", 0, value={"lines": [{"sku": "A"}]}),
               tap_record("stock-results", "StockReserved", 2, value={"sku": "Z"})]

    assert skus_in(records) == {"A", "B"}


@pytest.mark.parametrize("order_id", ["", "o 1", 'o"1', "o-1\n", "x" * 129, "../x"])
def test_an_order_id_that_is_not_one_is_refused(order_id):
    with pytest.raises(BadOrderId):
        checked_order_id(order_id)


def test_records_are_told_by_time_and_within_a_millisecond_a_cause_before_its_effect():
    given = [tap_record("orders", "OrderConfirmed", 10), tap_record("payment-results", "PaymentSucceeded", 10),
             tap_record("stock-requests", "ReserveStock", 5), tap_record("orders", "OrderPlaced", 5),
             tap_record("order-commands", "PlaceOrder", 1)]

    told = [r.schema.rsplit(".", 1)[1] for r in in_story_order(given) if r.schema]

    assert told == ["PlaceOrder", "OrderPlaced", "ReserveStock", "PaymentSucceeded", "OrderConfirmed"]


def test_facts_leave_out_the_plumbing_and_read_money_and_lines():
    value = {"event_id": "e", "order_id": "o-1", "user_id": "u", "occurred_at": "2026-12-01T00:00:00.000Z",
             "total": {"amount_minor": 1999, "currency": "EUR"}, "lines": [{}, {}], "reason": "TIMEOUT",
             "detail": None}

    assert facts_of(value) == {"total": "19.99 EUR", "lines": "2 items", "reason": "TIMEOUT"}
