"""A Faust message goes through the same decode-or-dead-letter path as a confluent-kafka one."""

from __future__ import annotations

import pytest
from faust.types.tuples import Message

from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.deadletter import decode_or_dead_letter
from shopflow.streams.serde import FaustRecord


class _NoRegistry:
    """Poison is recognised from the bytes alone; a registry lookup here would be a bug."""

    def schema_by_id(self, schema_id):
        raise AssertionError("the registry must not be asked for a record with a broken header")


def _message(value: bytes | None, headers=None) -> Message:
    return Message("order-commands", 4, 1234, 0.0, 0, headers, b"order-9", value, None)


@pytest.mark.parametrize(
    "value,reason",
    [(b"\x01\x00\x00\x00\x01abc", b"bad-magic-byte"), (b"\x00\x00", b"truncated"), (None, b"null-value")],
)
def test_a_poison_faust_message_becomes_a_dead_letter_with_its_origin(value, reason):
    decoded, letter = decode_or_dead_letter(AvroCodec(_NoRegistry()), FaustRecord(_message(value, {"trace": b"t1"})))

    assert decoded is None
    assert letter.topic == "order-commands.dlq"
    assert letter.key == b"order-9" and letter.value == value
    headers = dict(letter.headers)
    assert headers["trace"] == b"t1"  # the original headers travel along
    assert (headers["dlq.topic"], headers["dlq.partition"], headers["dlq.offset"]) == (b"order-commands", b"4", b"1234")
    assert headers["dlq.reason"] == reason
