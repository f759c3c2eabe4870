"""Turning any record of any topic into a ``TapRecord``, never failing on one.

Values are tried in turn, as Redpanda Console does: Confluent-framed Avro through the project's one
codec (every writer schema version by id from the registry), then UTF-8 JSON, then UTF-8 text, then
hex. A framed value the codec cannot read (unknown schema id, truncated body) is shown as hex with the
codec's reason in ``error``: a poison record is something to look at, not a reason to stop. A registry
that does not answer is no poison record: the tap stops with ``TapUnavailable``. A record of a
dead-letter topic is decoded as the original record it carries, with ``dlq.*`` headers
(schemas/deadletter.py) read into ``dead_letter``.

When the tap masks, only a value decoded by its schema can be masked field by field; any other value
(JSON, text, hex, a poison record: the hex of an undecoded UserRegistered spells its e-mail) is shown
as ``{"redacted": true, "bytes": n, "digest": "bytes:<pseudonym>"}``, and ``dlq.detail`` (an
exception's text, which may quote a value) is cut to its leading words (``Masking.detail``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from shopflow.schemas.codec import MAGIC, AvroCodec, CodecError
from shopflow.schemas.deadletter import SourceRecord, header_pairs
from shopflow.schemas.registry import RegistryError
from shopflow.taps.records import DeadLetterInfo, TapRecord, TapUnavailable, ValueFormat, hex_of, text_or_hex

DEAD_LETTER_SUFFIX = ".dlq"
DETAIL_HEADER = "dlq.detail"
_FRAME_HEADER = 5  # magic byte + 4-byte schema id


class RawRecord(SourceRecord, Protocol):
    """What confluent-kafka's Message offers, as far as decoding needs it."""

    def timestamp(self) -> tuple[int, int]: ...


def _bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


class Masking(Protocol):
    """What decoding needs of ``shopflow.taps.masking.Masker`` when the tap masks."""

    def mask_value(self, record: str, schema_id: int | None, value: Any) -> Any:
        """A decoded value with its personal fields (by record name and writer schema) as pseudonyms."""

    def redact(self, data: bytes) -> Any:
        """Bytes no schema decoded, shown as their length and a pseudonym only."""

    def detail(self, text: str) -> str:
        """A ``dlq.detail`` header's text without the values it may quote."""


class RecordDecoder:
    """Decodes raw records; ``codec`` None decodes without a registry (no Avro: framed values as hex).
    ``masking`` masks a decoded Avro value before its record is built (one record per message, not
    one decoded and another masked: this is the hot path of a tap) and redacts what it cannot mask."""

    def __init__(self, codec: AvroCodec | None, masking: Masking | None = None):
        self.codec = codec
        self.masking = masking
        self._names: dict[int, str] = {}  # writer schema id -> record full name

    def decode(self, msg: RawRecord) -> TapRecord:
        topic = msg.topic() or ""
        headers = [(name, text_or_hex(v)) for name, v in header_pairs(msg)] if msg.headers() else []
        data = _bytes(msg.value())
        value, value_format, schema, schema_id, error = self.decode_value(data)
        if self.masking is not None:
            if value_format not in ("avro", "tombstone") and data is not None:
                value = self.masking.redact(data)
            if headers and topic.endswith(DEAD_LETTER_SUFFIX):
                headers = [(name, self.masking.detail(v) if name == DETAIL_HEADER and isinstance(v, str) else v)
                           for name, v in headers]
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
            if self.masking is not None:
                value = self.masking.mask_value(name, schema_id, value)
            return value, "avro", name, schema_id, None
        except CodecError as exc:  # an unknown schema id, a body that does not match: a poison record
            return hex_of(data), "hex", None, schema_id, f"{exc.reason}: {exc}"
        except RegistryError as exc:  # the registry did not answer: every later record would fail alike
            raise TapUnavailable(f"cannot decode schema id {schema_id}: {exc}") from None


def dead_letter_info(headers: Sequence[tuple[str, Any]]) -> DeadLetterInfo | None:
    """The ``dlq.*`` headers of a dead letter (the last of each name: a record dead-lettered twice keeps
    its first headers and gets new ones after them), or None when it has none."""
    found = {name: value for name, value in headers if name.startswith("dlq.") and isinstance(value, str)}
    if "dlq.reason" not in found:
        return None
    return DeadLetterInfo(
        reason=found["dlq.reason"],
        detail=found.get(DETAIL_HEADER, ""),
        source_topic=found.get("dlq.topic"),
        source_partition=_int(found.get("dlq.partition")),
        source_offset=_int(found.get("dlq.offset")),
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
