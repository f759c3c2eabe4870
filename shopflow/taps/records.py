"""What a tap yields: one decoded record (``TapRecord``), the end-of-scan ``TapSummary`` and ``TapError``.

``TapRecord.as_json`` is the one JSON shape of a record, shared by the CLI's JSONL, the HTTP stream
and the ops console, so a record looks the same wherever an analyst meets it. A record's ``value``
holds an Avro value as fastavro decodes it (datetime, UUID, Decimal, bytes: what the Parquet export
maps to Arrow types and CEL compares as timestamps); ``as_json`` turns those into JSON: times as
ISO-8601 UTC with milliseconds (``2026-12-01T23:42:31.123Z``), UUIDs and decimals as strings, bytes
as ``{"hex": ...}``.

``json_line`` is that shape already serialised, the hot path of a tap (JSONL, NDJSON, SSE): orjson
writes the record dataclass and fastavro's values as they are, in C, calling ``json_leaf`` only for
the few values it must not write its own way (times, bytes, decimals). ``as_json`` is ``json_line``
read back, so the two cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

# Bytes that are not UTF-8 are carried as {"hex": "..."} so every record stays JSON.
Hex = dict[str, str]
Text = str | Hex
ValueFormat = Literal["avro", "tombstone", "json", "text", "hex"]
StoppedBy = Literal["end", "until", "count", "max-scanned", "interrupted"]


class TapError(Exception):
    """A tap that cannot run as asked (unknown topic, bad expression, partition out of range); the
    message says what to do instead."""


class TapUnavailable(TapError):
    """Kafka or the registry did not answer: not the request's fault (HTTP 503, not 400)."""


def hex_of(data: bytes) -> Hex:
    return {"hex": data.hex()}


def text_or_hex(data: bytes | None) -> Text | None:
    """UTF-8 text when the bytes are, else ``{"hex": ...}``; None stays None."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return hex_of(data)


def json_leaf(value: Any) -> Any:
    """A value JSON has no type for, as the tap's JSON writes it (orjson's ``default``; see the module's doc)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # Avro's local-timestamp types: shown as UTC, as the broker's times are
            return value.isoformat(timespec="milliseconds") + "Z"
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return hex_of(bytes(value))
    return str(value)  # UUID, Decimal


# Times go to ``json_leaf`` (orjson's own form has microseconds and no fixed width)
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def json_bytes(value: Any, newline: bool = False) -> bytes:
    """``value`` (a record, a decoded value) as compact JSON text in the tap's shape."""
    option = _JSON_OPTIONS | orjson.OPT_APPEND_NEWLINE if newline else _JSON_OPTIONS
    try:
        return orjson.dumps(value, default=json_leaf, option=option)
    except orjson.JSONEncodeError:
        # an integer past 64 bits (a JSON value on a topic can hold one): Python's json writes any int
        text = json.dumps(plain(value), ensure_ascii=False, separators=(",", ":"))
        return (text + "\n" if newline else text).encode()


def plain(value: Any) -> Any:
    """A decoded value with JSON's types only (see the module's doc)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, TapRecord | DeadLetterInfo):  # as orjson writes a dataclass: its fields
        return {name: plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return json_leaf(value)


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """Why and where from a record landed on a dead-letter topic (its ``dlq.*`` headers)."""

    reason: str
    detail: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
        }


@dataclass(frozen=True, slots=True)
class TapRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: Text | None
    headers: list[tuple[str, Text | None]]
    # decoded Avro dict (fastavro's types), None for a tombstone, parsed JSON, text, or {"hex": ...}
    value: Any
    value_format: ValueFormat
    schema: str | None = None
    schema_id: int | None = None
    error: str | None = None
    dead_letter: DeadLetterInfo | None = None

    def json_line(self) -> bytes:
        """The record's one JSON shape as a line of text (CLI jsonl, HTTP NDJSON/SSE): orjson writes the
        dataclass's fields in their order, ``dead_letter`` as its fields, ``headers`` as pairs."""
        return json_bytes(self, newline=True)

    def as_json(self) -> dict[str, Any]:
        """The one JSON shape of a record as a dict (console, CSV): ``json_line`` read back (by Python's
        json, which keeps an integer past 64 bits whole)."""
        shape: dict[str, Any] = json.loads(self.json_line())
        return shape


@dataclass
class TapSummary:
    scanned: int = 0
    returned: int = 0
    stopped_by: StoppedBy = "end"
    # next offset to read per partition: where a later tap continues
    positions: dict[int, int] = field(default_factory=dict)
    message: str = ""
    # records whose filter could not be evaluated (e.g. a missing field): counted as no match
    filter_errors: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "summary": True,
            "scanned": self.scanned,
            "returned": self.returned,
            "stopped_by": self.stopped_by,
            "positions": {str(p): o for p, o in sorted(self.positions.items())},
            "message": self.message,
            "filter_errors": self.filter_errors,
        }
