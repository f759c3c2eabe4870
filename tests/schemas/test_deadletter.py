"""Poison records on a real topic end up on its dead-letter topic with the reason; the stream goes on."""

from __future__ import annotations

import struct

import pytest

from shopflow.schemas import load_schema
from shopflow.schemas.deadletter import decode_or_dead_letter

pytestmark = pytest.mark.integration

RECORD = "shopflow.inventory.StockAdjusted"


def test_poison_bytes_reach_the_dead_letter_topic_and_the_stream_goes_on(
    stack, topic_factory, producer, consume, codec
):
    topic = topic_factory("poison")
    dlq = topic_factory("poison-dlq")  # stands in for <topic>.dlq, which a test topic has no catalog entry for
    schema = load_schema(RECORD)
    good = lambda n: codec.encode_value(f"{topic}-{RECORD}", schema, {  # noqa: E731
        "event_id": f"00000000-0000-4000-8000-00000000000{n}", "sku": f"SKU-{n}", "delta": n,
        "reason": "recount", "adjusted_by": None, "occurred_at": 1_700_000_000_000,
    })
    unknown_id = b"\x00" + struct.pack(">I", 2_000_000_000) + good(1)[5:]
    # Given: good, bad magic, good, truncated, unknown schema id, good
    inputs = [good(1), b"\x07not-avro", good(2), good(3)[:6], unknown_id, good(4)]
    for i, value in enumerate(inputs):
        producer.produce(topic, key=f"k{i}".encode(), value=value)
    producer.flush(10)

    # When: the stream decodes every record, dead-lettering what it cannot
    decoded, sent = [], []
    for msg in consume(topic, len(inputs)):
        value, letter = decode_or_dead_letter(codec, msg)
        if letter is None:
            decoded.append(value["sku"])
        else:
            producer.produce(dlq, key=letter.key, value=letter.value, headers=letter.headers)
            sent.append(letter)
    producer.flush(10)

    # Then: the good ones in order, the three poison ones on the dead-letter topic with their reasons
    assert decoded == ["SKU-1", "SKU-2", "SKU-4"]
    assert sent[0].topic == f"{topic}.dlq"
    letters = consume(dlq, 3)
    reasons = [dict(m.headers())["dlq.reason"] for m in letters]
    assert reasons == [b"bad-magic-byte", b"truncated", b"unknown-schema-id"]
    for m, offset in zip(letters, (1, 3, 4), strict=True):
        h = dict(m.headers())
        assert h["dlq.topic"] == topic.encode()
        assert h["dlq.offset"] == str(offset).encode()
        assert h["dlq.partition"] == b"0"
        assert m.value() == inputs[offset]  # original bytes kept for replay
