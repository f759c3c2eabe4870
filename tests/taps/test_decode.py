"""Any bytes become a TapRecord: Avro through the codec, tombstones, JSON, text, hex; never an exception."""

from __future__ import annotations

import json
import struct

import pytest
from taprecords import SCHEMA_V1, SCHEMA_V2, RawMessage, probe

from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.registry import RegistryError
from shopflow.taps.decode import RecordDecoder, dead_letter_info
from shopflow.taps.masking import PERSONAL, Masker
from shopflow.taps.records import TapUnavailable


def test_avro_of_every_writer_version_decodes_with_its_schema(memory_codec):
    decoder = RecordDecoder(memory_codec)
    v1 = memory_codec.encode_value("s", SCHEMA_V1, probe(1))
    v2 = memory_codec.encode_value("s", SCHEMA_V2, probe(2, channel="app"))

    old, new = decoder.decode(RawMessage(v1)), decoder.decode(RawMessage(v2))

    assert (old.value_format, old.schema, old.error) == ("avro", "shopflow.tests.TapProbe", None)
    assert old.value["customer"]["tier"] == "gold" and "channel" not in old.value
    assert new.value["channel"] == "app" and new.schema_id != old.schema_id


def test_the_json_shape_has_json_types_only(memory_codec):
    record = RecordDecoder(memory_codec).decode(RawMessage(memory_codec.encode_value("s", SCHEMA_V1, probe(1))))

    shape = record.as_json()

    assert shape["value"]["at"] == "2026-12-01T00:00:00.000Z"
    assert json.loads(json.dumps(shape)) == shape
    assert {k: shape[k] for k in ("topic", "partition", "offset", "timestamp_ms", "key")} == {
        "topic": "test-topic", "partition": 0, "offset": 7, "timestamp_ms": 1_796_083_200_000, "key": "k-1"}


def test_a_tombstone_is_shown_as_one():
    record = RecordDecoder(None).decode(RawMessage(None))
    assert (record.value, record.value_format, record.error) == (None, "tombstone", None)


@pytest.mark.parametrize(("data", "value", "value_format"), [
    (b'{"a": {"b": 1}}', {"a": {"b": 1}}, "json"),
    (b"[1, 2]", [1, 2], "json"),
    (b"{not json", "{not json", "text"),
    (b"plain text", "plain text", "text"),
    (b"\xff\xfe\x01", {"hex": "fffe01"}, "hex"),
    (b"\x00\x01", "\x00\x01", "text"),  # too short for a Confluent frame; NUL is valid UTF-8
])
def test_bytes_that_are_not_avro_are_json_text_or_hex(data, value, value_format):
    record = RecordDecoder(None).decode(RawMessage(data))
    assert (record.value, record.value_format) == (value, value_format)


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x00" + struct.pack(">I", 999) + b"\x02", "unknown-schema-id"),
])
def test_a_poison_record_is_hex_with_the_codecs_reason(memory_codec, data, reason):
    record = RecordDecoder(memory_codec).decode(RawMessage(data))
    assert record.value_format == "hex" and record.value == {"hex": data.hex()}
    assert record.schema_id == 999 and record.error is not None and record.error.startswith(reason)


def test_a_truncated_avro_body_is_hex_with_the_reason(memory_codec):
    good = memory_codec.encode_value("s", SCHEMA_V1, probe(1))
    record = RecordDecoder(memory_codec).decode(RawMessage(good[:8]))
    assert record.value_format == "hex" and record.error is not None and record.error.startswith("truncated")


def test_framed_values_without_a_registry_are_hex_saying_so():
    record = RecordDecoder(None).decode(RawMessage(b"\x00\x00\x00\x00\x05\x02"))
    assert (record.value_format, record.schema_id) == ("hex", 5)
    assert "no schema registry" in (record.error or "")


def test_keys_and_headers_are_text_or_hex():
    record = RecordDecoder(None).decode(RawMessage(b"x", key_bytes=b"\xff", header_pairs=[
        ("trace", b"abc"), ("bin", b"\x80"), ("empty", None)]))
    assert record.key == {"hex": "ff"}
    assert record.headers == [("trace", "abc"), ("bin", {"hex": "80"}), ("empty", None)]


def test_a_dead_letter_shows_the_original_record_and_why(memory_codec):
    original = memory_codec.encode_value("s", SCHEMA_V1, probe(3))
    headers = [("dlq.topic", b"orders"), ("dlq.partition", b"2"), ("dlq.offset", b"41"),
               ("dlq.reason", b"handler-failed"), ("dlq.detail", b"boom")]

    record = RecordDecoder(memory_codec).decode(RawMessage(original, topic_name="orders.dlq", header_pairs=headers))

    assert record.value["order_id"] == "o-3"
    assert record.dead_letter is not None and record.dead_letter.as_json() == {
        "reason": "handler-failed", "detail": "boom", "source_topic": "orders", "source_partition": 2,
        "source_offset": 41}


def test_headers_without_a_reason_are_no_dead_letter():
    assert dead_letter_info([("dlq.topic", "orders")]) is None
    assert RecordDecoder(None).decode(RawMessage(b"x", topic_name="orders.dlq")).dead_letter is None


def test_a_masking_decoder_masks_the_avro_value_before_the_record_is_built(memory_codec):
    marked = {**SCHEMA_V1, "fields": [
        *SCHEMA_V1["fields"][:3], {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
            {"name": "email", "type": "string", PERSONAL: "email"}, {"name": "tier", "type": "string"}]}}]}
    masker = Masker("secret", schemas={"shopflow.tests.TapProbe": marked})
    decoder = RecordDecoder(memory_codec, masker)

    record = decoder.decode(RawMessage(memory_codec.encode_value("s", SCHEMA_V1, probe(1))))

    assert record.value["customer"]["email"].startswith("email:") and record.value["customer"]["tier"] == "gold"
    assert record == masker.mask(RecordDecoder(memory_codec).decode(RawMessage(
        memory_codec.encode_value("s", SCHEMA_V1, probe(1)))))  # as masking the decoded record would


@pytest.mark.parametrize("data,value_format", [
    (b"c1@example.com", "text"),
    (b'{"email": "c1@example.com"}', "json"),
    (b"\xffc1@example.com", "hex"),
    (b"\x00\x00\x00\x00\x63c1@example.com", "hex"),  # framed, an unknown schema id: poison
])
def test_a_masking_decoder_redacts_what_no_schema_decoded(memory_codec, data, value_format):
    # no schema says which part of these bytes is personal: the hex of an undecoded record spells its e-mail
    masker = Masker("secret")
    record = RecordDecoder(memory_codec, masker).decode(RawMessage(data))

    assert record.value_format == value_format
    assert record.value == {"redacted": True, "bytes": len(data), "digest": masker.pseudonym("bytes", data)}
    assert b"c1@example" not in record.json_line() and "6331406578616d706c65" not in record.json_line().decode()
    assert RecordDecoder(memory_codec).decode(RawMessage(data)).value != record.value  # unmasked: shown


def test_a_masked_dead_letter_keeps_its_reason_and_source_but_not_the_values_its_detail_quotes(memory_codec):
    headers = [("dlq.topic", b"users"), ("dlq.partition", b"0"), ("dlq.offset", b"7"),
               ("dlq.reason", b"handler-failed"),
               ("dlq.detail", b"users agent raised ValueError('ann@example.test is taken')")]
    record = RecordDecoder(memory_codec, Masker("secret")).decode(
        RawMessage(b"garbage", topic_name="users.dlq", header_pairs=headers))

    assert record.dead_letter is not None
    assert (record.dead_letter.reason, record.dead_letter.source_topic, record.dead_letter.source_offset) == (
        "handler-failed", "users", 7)
    assert record.dead_letter.detail == "users agent raised ValueError … (masked)"
    assert "ann@" not in record.json_line().decode() and record.key == "k-1"  # keys (ids) stay in the clear


def test_a_registry_that_does_not_answer_stops_the_tap_rather_than_showing_hex():
    class Down:
        def schema_by_id(self, schema_id: int) -> dict | None:
            raise RegistryError("schema registry at http://localhost:8081 unreachable; start it with "
                                "`shopflow stack up`")

    with pytest.raises(TapUnavailable, match="unreachable"):
        RecordDecoder(AvroCodec(Down())).decode(RawMessage(b"\x00\x00\x00\x00\x05\x02"))  # type: ignore[arg-type]
