"""Turning any record of any topic into a ``TapRecord``, never failing on one.

Values are tried in turn, as Redpanda Console does: Confluent-framed Avro through the project's one
codec (every writer schema version by id from the registry), then UTF-8 JSON, then UTF-8 text, then
hex. A framed value the codec cannot read (unknown schema id, truncated body) is shown as hex with the
codec's reason in ``error``: a poison record is something to look at, not a reason to stop. A record
of a dead-letter topic is decoded as the original record it carries, with ``dlq.*`` headers
(schemas/deadletter.py) read into ``dead_letter``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from shopflow.schemas.codec import MAGIC, AvroCodec, CodecError
from shopflow.schemas.deadletter import SourceRecord, header_pairs
from shopflow.schemas.registry import RegistryError
from shopflow.taps.records import DeadLetterInfo, TapRecord, ValueFormat, hex_of, text_or_hex

DEAD_LETTER_SUFFIX = ".dlq"
_FRAME_HEADER = 5  # magic byte + 4-byte schema id


class RawRecord(SourceRecord, Protocol):
    """What confluent-kafka's Message offers, as far as decoding needs it."""

    def timestamp(self) -> tuple[int, int]: ...


def _bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


# (record full name, writer schema id, decoded value) -> the value with personal fields masked
MaskValue = Callable[[str, int | None, Any], Any]


class RecordDecoder:
    """Decodes raw records; ``codec`` None decodes without a registry (no Avro: framed values as hex).
    ``mask_value`` masks a decoded Avro value before its record is built (one record per message, not
    one decoded and another masked: this is the hot path of a tap)."""

    def __init__(self, codec: AvroCodec | None, mask_value: MaskValue | None = None):
        self.codec = codec
        self.mask_value = mask_value
        self._names: dict[int, str] = {}  # writer schema id -> record full name

    def decode(self, msg: RawRecord) -> TapRecord:
        topic = msg.topic() or ""
        headers = [(name, text_or_hex(v)) for name, v in header_pairs(msg)] if msg.headers() else []
        value, value_format, schema, schema_id, error = self.decode_value(_bytes(msg.value()))
        return TapRecord(
            topic=topic,
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            timestamp_ms=msg.timestamp()[1],
            key=text_or_hex(_bytes(msg.key())),
            headers=headers,
            value=value,
            value_format=value_format,
            schema=schema,
            schema_id=schema_id,
            error=error,
            dead_letter=dead_letter_info(headers) if topic.endswith(DEAD_LETTER_SUFFIX) else None,
        )

    def decode_value(self, data: bytes | None) -> tuple[Any, ValueFormat, str | None, int | None, str | None]:
        """``(value, format, schema name, schema id, error)`` of a record's value bytes."""
        if data is None:
            return None, "tombstone", None, None, None
        if len(data) >= _FRAME_HEADER and data[0] == MAGIC:
            return self._avro(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return hex_of(data), "hex", None, None, None
        if text[:1] in ("{", "["):
            try:
                return json.loads(text), "json", None, None, None
            except ValueError:
                pass
        return text, "text", None, None, None

    def _avro(self, data: bytes) -> tuple[Any, ValueFormat, str | None, int | None, str | None]:
        schema_id = int.from_bytes(data[1:_FRAME_HEADER], "big")
        if self.codec is None:
            return hex_of(data), "hex", None, schema_id, "no schema registry to decode Avro with"
        try:
            name = self._names.get(schema_id)
            if name is None:
                name = self._names[schema_id] = self.codec.record_name(data)
            value = self.codec.decode(data)
            if self.mask_value is not None:
                value = self.mask_value(name, schema_id, value)
            return value, "avro", name, schema_id, None
        except CodecError as exc:
            return hex_of(data), "hex", None, schema_id, f"{exc.reason}: {exc}"
        except RegistryError as exc:
            return hex_of(data), "hex", None, schema_id, f"registry: {exc}"


def dead_letter_info(headers: Sequence[tuple[str, Any]]) -> DeadLetterInfo | None:
    """The ``dlq.*`` headers of a dead letter (the last of each name: a record dead-lettered twice keeps
    its first headers and gets new ones after them), or None when it has none."""
    found = {name: value for name, value in headers if name.startswith("dlq.") and isinstance(value, str)}
    if "dlq.reason" not in found:
        return None
    return DeadLetterInfo(
        reason=found["dlq.reason"],
        detail=found.get("dlq.detail", ""),
        source_topic=found.get("dlq.topic"),
        source_partition=_int(found.get("dlq.partition")),
        source_offset=_int(found.get("dlq.offset")),
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
