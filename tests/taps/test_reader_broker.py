"""The tap engine on the real broker and registry: seeking, ends, a live burst, filters, evolution, poison.

Every test writes its own throwaway topic with explicit timestamps and partitions, then taps it.
"""

from __future__ import annotations

import struct
import threading
import time
import uuid

import pytest
from polling import eventually
from taprecords import SCHEMA_V1, SCHEMA_V2, probe

from shopflow.taps.masking import Masker
from shopflow.taps.reader import AtOffset, AtTime, Beginning, End, Tap, TapRequest
from shopflow.taps.records import TapError, TapRecord

pytestmark = pytest.mark.integration

SUBJECT_RECORD = "shopflow.tests.TapProbe"
T = int(time.time() * 1000) - 3_600_000  # an hour ago: every "future" record is still in the past


@pytest.fixture
def write(producer, codec):
    """``write(topic, partition, n, timestamp_ms=..., schema=..., headers=..., raw=...)``: one record (its
    value a TapProbe of ``n`` unless ``raw`` bytes, or None for a tombstone), sent and flushed."""
    def send(topic: str, partition: int, n: int, timestamp_ms: int = T, schema: dict = SCHEMA_V1,
             headers: list | None = None, raw: bytes | None | str = "avro", **fields) -> None:
        value = codec.encode_value(f"{topic}-{SUBJECT_RECORD}", schema, probe(n, **fields)) if raw == "avro" else raw
        producer.produce(topic, value=value, key=f"o-{n}", partition=partition, timestamp=timestamp_ms,
                         headers=headers or [])
        producer.flush(10)
    return send


@pytest.fixture
def tap_all(stack, codec):
    """``tap_all(request)``: every record a tap shows, and its summary (unmasked unless a masker is given)."""
    def run(request: TapRequest, masker=None) -> tuple[list[TapRecord], object]:
        with Tap(stack, request, codec=codec, masker=masker) as tap:
            records = list(tap.records())
        return records, tap.summary
    return run


def positions(records: list[TapRecord]) -> list[tuple[int, int]]:
    return [(r.partition, r.timestamp_ms) for r in records]


def test_seek_by_time_returns_exactly_the_records_at_or_after_it_on_every_partition(topic_factory, write, tap_all):
    # Given: p0 around T, p1 only before T (nothing after it), p2 empty, p3 only after T
    topic = topic_factory("tap-seek", partitions=4)
    for partition, offsets in {0: (-2000, -1000, 0, 1000), 1: (-3000,), 3: (500, 1500)}.items():
        for n, delta in enumerate(offsets):
            write(topic, partition, n, timestamp_ms=T + delta)

    # When: tapped from T
    records, summary = tap_all(TapRequest(topic, start=AtTime(T), mask=False))

    # Then: exactly the records at or after T, each partition in order; p1 not read from its beginning
    assert sorted(positions(records)) == [(0, T), (0, T + 1000), (3, T + 500), (3, T + 1500)]
    for p in (0, 3):
        mine = [r.offset for r in records if r.partition == p]
        assert mine == sorted(mine)
    assert summary.stopped_by == "end" and summary.scanned == 4
    assert summary.positions == {0: 4, 1: 1, 2: 0, 3: 2}
    assert "partitions 1, 2: no record at or after" in summary.message


@pytest.mark.parametrize("follow", [False, True])
def test_until_stops_after_the_records_up_to_it_on_every_partition(topic_factory, write, tap_all, follow):
    topic = topic_factory("tap-until", partitions=3)
    for partition, deltas in {0: (-1000, 0, 1000, 2000), 1: (3000,), 2: (-500,)}.items():
        for n, delta in enumerate(deltas):
            write(topic, partition, n, timestamp_ms=T + delta)

    # following too: the tap ends by itself once every partition is past `until`
    records, summary = tap_all(TapRequest(topic, start=AtTime(T), until_ms=T + 1000, follow=follow, mask=False))

    assert sorted(positions(records)) == [(0, T), (0, T + 1000)]
    assert summary.stopped_by == "until"


def test_a_followed_tap_until_a_near_future_time_ends_by_itself_on_a_quiet_partition(stack, codec, topic_factory,
                                                                                    write):
    # Given: a partition with one record, then quiet; a live tail up to two seconds from now
    topic = topic_factory("tap-until-quiet", partitions=1)
    write(topic, 0, 0, timestamp_ms=int(time.time() * 1000))
    until = int(time.time() * 1000) + 2000
    seen: list[TapRecord] = []
    with Tap(stack, TapRequest(topic, until_ms=until, follow=True, mask=False), codec=codec) as tap:
        # When: it reads with nothing more arriving
        reader = threading.Thread(target=lambda: seen.extend(tap.records()), daemon=True)
        reader.start()
        try:
            # Then: it ends by itself soon after `until`, saying so (librdkafka tells the end only once)
            eventually(lambda: not reader.is_alive(), timeout_s=15, what="the followed tap to end after --until")
        finally:
            tap.stop()
            reader.join(10)
    assert tap.summary.stopped_by == "until" and [r.offset for r in seen] == [0]


def test_an_empty_topic_ends_at_once_and_an_offset_past_the_end_is_a_note(topic_factory, write, tap_all):
    empty = topic_factory("tap-empty", partitions=2)
    started = time.monotonic()
    records, summary = tap_all(TapRequest(empty, mask=False))
    assert records == [] and summary.stopped_by == "end" and time.monotonic() - started < 10

    topic = topic_factory("tap-offset")
    for n in range(3):
        write(topic, 0, n)
    records, summary = tap_all(TapRequest(topic, start=AtOffset(1), mask=False))
    assert [r.offset for r in records] == [1, 2]
    records, summary = tap_all(TapRequest(topic, start=AtOffset(99), mask=False))
    assert records == [] and "offset 99 is past its end 3" in summary.message


def test_follow_catches_a_burst_with_none_missed_and_none_twice(stack, topic_factory, producer, codec):
    topic = topic_factory("tap-follow", partitions=3)
    burst = 10_000
    seen: list[TapRecord] = []
    with Tap(stack, TapRequest(topic, start=End(), follow=True, mask=False), codec=codec) as tap:
        reader = threading.Thread(target=lambda: seen.extend(tap.records()), daemon=True)
        reader.start()
        # When: a burst is produced while the tap runs
        framed = [codec.encode_value(f"{topic}-{SUBJECT_RECORD}", SCHEMA_V1, probe(n)) for n in range(burst)]
        for n, value in enumerate(framed):
            producer.produce(topic, value=value, key=f"o-{n}")
            producer.poll(0)
        producer.flush(30)
        eventually(lambda: len(seen) >= burst, timeout_s=60, what=f"the tap to show {burst} records")
        tap.stop()
        reader.join(10)
    # Then: every record exactly once, each partition in offset order
    shown = [r.value["n"] for r in seen]
    assert len(shown) == len(set(shown)) == burst, f"{len(shown)} shown, {len(set(shown))} distinct, of {burst}"
    assert set(shown) == set(range(burst))
    for p in range(3):
        offsets = [r.offset for r in seen if r.partition == p]
        assert offsets == list(range(len(offsets)))
    assert tap.summary.stopped_by == "interrupted" and tap.summary.returned == burst


def test_filters_on_a_nested_field_and_a_header(topic_factory, write, tap_all):
    topic = topic_factory("tap-where")
    for n, (tier, source) in enumerate([("gold", "edge"), ("silver", "edge"), ("silver", "batch"), ("gold", "batch")]):
        write(topic, 0, n, tier=tier, headers=[("source", source.encode())])

    records, summary = tap_all(TapRequest(topic, where='value.customer.tier == "silver" && headers["source"] == "edge"',
                                          mask=False))

    assert [r.value["n"] for r in records] == [1]
    assert (summary.scanned, summary.returned, summary.filter_errors) == (4, 1, 0)


def test_a_schema_that_evolved_mid_topic_decodes_on_both_sides(topic_factory, write, tap_all):
    topic = topic_factory("tap-evolve")
    write(topic, 0, 0)  # v1
    write(topic, 0, 1, schema=SCHEMA_V2, channel="app")  # v2: a defaulted field added
    write(topic, 0, 2)  # a v1 producer still running

    records, _ = tap_all(TapRequest(topic, fields=["n", "channel"], mask=False))

    assert [r.value for r in records] == [{"n": 0}, {"n": 1, "channel": "app"}, {"n": 2}]
    assert records[0].schema_id == records[2].schema_id != records[1].schema_id
    assert {r.value_format for r in records} == {"avro"}


def test_a_poison_record_and_a_tombstone_are_shown_not_fatal(topic_factory, write, tap_all):
    topic = topic_factory("tap-poison")
    write(topic, 0, 0)
    write(topic, 0, 1, raw=b"\x00" + struct.pack(">I", 2_000_000_000) + b"\x02\x04")  # unknown schema id
    write(topic, 0, 2, raw=b"\x07not-avro")
    write(topic, 0, 3, raw=None)  # a tombstone
    write(topic, 0, 4)

    records, summary = tap_all(TapRequest(topic, mask=False))

    assert [r.value_format for r in records] == ["avro", "hex", "text", "tombstone", "avro"]
    assert records[1].error is not None and records[1].error.startswith("unknown-schema-id")
    assert records[3].value is None and summary.stopped_by == "end"


def test_a_scan_bound_stops_says_so_and_the_rest_follows_from_where_it_says(topic_factory, write, tap_all):
    topic = topic_factory("tap-bound", partitions=2)
    for n in range(30):
        write(topic, n % 2, n)

    first, summary = tap_all(TapRequest(topic, max_scanned=20, mask=False))
    assert summary.stopped_by == "max-scanned" and summary.scanned == 20 == len(first)
    assert "stopped after scanning 20 records (--max-scanned)" in summary.message

    rest, _ = tap_all(TapRequest(topic, start=AtOffset(summary.positions), mask=False))
    assert sorted(r.value["n"] for r in first + rest) == list(range(30))

    counted, summary = tap_all(TapRequest(topic, where="value.n % 3 == 0", count=4, mask=False))
    assert len(counted) == 4 and summary.stopped_by == "count"


def test_a_filter_cannot_probe_a_field_the_tap_masks(stack, topic_factory, codec, write, tap_all):
    personal = {**SCHEMA_V1, "name": f"TapProbe{uuid.uuid4().hex[:6]}"}  # its own record: marks of its own
    personal["fields"] = [*SCHEMA_V1["fields"][:3], {"name": "customer", "type": {
        "type": "record", "name": "Customer", "fields": [
            {"name": "email", "type": "string", "shopflow.personal": "email"}, {"name": "tier", "type": "string"}]}}]
    topic = topic_factory("tap-mask")
    write(topic, 0, 1, schema=personal)
    masker = Masker.from_settings(stack, codec)
    probing = 'value.customer.email == "c1@example.com"'

    masked, _ = tap_all(TapRequest(topic, where=probing), masker=masker)
    clear, _ = tap_all(TapRequest(topic, where=probing, mask=False))

    assert masked == [] and len(clear) == 1


def test_a_partition_the_topic_does_not_have_is_refused(stack, topic_factory, codec):
    topic = topic_factory("tap-partition", partitions=2)
    with (pytest.raises(TapError, match="has partitions 0..1; there is no partition 5"),
          Tap(stack, TapRequest(topic, partitions=[5], start=Beginning(), mask=False), codec=codec)):
        pass
