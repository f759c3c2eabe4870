"""The one JSON shape of a tap record: ``json_line`` (JSONL, NDJSON, SSE) and ``as_json`` (console, CSV)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

from taprecords import tap_record

from shopflow.taps.records import DeadLetterInfo, json_bytes

EVENT_ID = uuid.UUID("0dd3a338-4034-4dfe-9351-94f99dade0d2")


def every_avro_type() -> dict:
    """A decoded value with each type fastavro gives that JSON has no type for."""
    return {"at": dt.datetime(2026, 12, 1, 23, 42, 31, 123456, tzinfo=dt.UTC),
            "local": dt.datetime(2026, 12, 1, 8, 0), "paris": dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.timezone(
                dt.timedelta(hours=1))), "day": dt.date(2026, 12, 1), "clock": dt.time(8, 30, 0, 250_000),
            "event_id": EVENT_ID, "price": Decimal("19.90"), "blob": b"\x00\xff", "lines": [{"n": 1.5}, None],
            "ok": True}


def test_the_line_is_the_documented_shape_byte_for_byte():
    record = tap_record(key={"hex": "ff"}, headers=[("trace", "t-1"), ("raw", None)], value=every_avro_type(),
                        schema="shopflow.orders.OrderPlaced", schema_id=37,
                        dead_letter=DeadLetterInfo("bad-magic-byte", "d", "orders", 2, 41))

    line = record.json_line()

    assert line == (
        b'{"topic":"orders","partition":0,"offset":0,"timestamp_ms":1764633600000,"key":{"hex":"ff"},'
        b'"headers":[["trace","t-1"],["raw",null]],"value":{"at":"2026-12-01T23:42:31.123Z",'
        b'"local":"2026-12-01T08:00:00.000Z","paris":"2026-12-01T00:00:00.000Z","day":"2026-12-01",'
        b'"clock":"08:30:00.250000","event_id":"0dd3a338-4034-4dfe-9351-94f99dade0d2","price":"19.90",'
        b'"blob":{"hex":"00ff"},"lines":[{"n":1.5},null],"ok":true},"value_format":"avro",'
        b'"schema":"shopflow.orders.OrderPlaced","schema_id":37,"error":null,"dead_letter":{"reason":'
        b'"bad-magic-byte","detail":"d","source_topic":"orders","source_partition":2,"source_offset":41}}\n')
    assert record.as_json() == json.loads(line)
    assert record.as_json()["dead_letter"] == record.dead_letter.as_json()


def test_an_integer_past_64_bits_in_a_json_value_is_written_whole():
    record = tap_record(value={"big": 2**70}, value_format="json")

    assert json.loads(record.json_line())["value"]["big"] == 2**70
    assert record.as_json()["value"]["big"] == 2**70


def test_a_value_alone_is_written_in_the_same_shape():
    assert json_bytes({"at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC), "id": EVENT_ID}) == (
        b'{"at":"2026-12-01T00:00:00.000Z","id":"0dd3a338-4034-4dfe-9351-94f99dade0d2"}')
