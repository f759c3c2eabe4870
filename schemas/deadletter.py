"""Dead letters: a record that cannot be decoded or processed is set aside, never a crashed stream.

The dead-letter record keeps the original key and value bytes untouched (so it can be replayed
once the cause is fixed) and says where it came from and why in headers:
``dlq.topic``, ``dlq.partition``, ``dlq.offset``, ``dlq.reason`` (a short code such as
``bad-magic-byte``) and ``dlq.detail`` (the message). Every stream of ShopFlow, Faust agent or
plain consumer loop, goes through ``decode_or_dead_letter`` (a plain dict, resolved into a reader
schema when given) or ``decode_record_or_dead_letter`` (the typed record of ``shopflow.schemas``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shopflow.schemas.codec import AvroCodec, CodecError
from shopflow.schemas.records import AvroRecord
from shopflow.topologies.catalog import by_name


class SourceRecord(Protocol):
    """What confluent-kafka's Message offers (and a Faust message can be adapted to), typed as its stubs
    declare it: a consumed record always has a topic, partition and offset, but the type allows None."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> str | bytes | None: ...
    def headers(self) -> Mapping[str, str | bytes | None] | Sequence[tuple[str, str | bytes | None]] | None: ...


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def header_pairs(record: SourceRecord) -> list[tuple[str, bytes | None]]:
    """A record's headers as ``(name, bytes)`` pairs, whichever form the client gives them in."""
    source = record.headers() or []
    pairs = source.items() if isinstance(source, Mapping) else source
    return [(k, _bytes(v)) for k, v in pairs]


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]

    @property
    def detail(self) -> str:
        """The ``dlq.detail`` header, for a log line."""
        return (dict(self.headers).get("dlq.detail") or b"").decode(errors="replace")


def dead_letter_topic(source_topic: str) -> str:
    """The catalog's dead-letter topic of a topic (``<name>.dlq``), also for topics not in the catalog."""
    try:
        return by_name(source_topic).dead_letter
    except KeyError:
        return f"{source_topic}.dlq"


def source_topic_of(topic: str) -> str | None:
    """The topic whose dead letters ``topic`` holds (``dead_letter_topic`` read backwards), None when
    ``topic`` is not a dead-letter topic."""
    source = topic.rpartition(".")[0]
    return source if source and dead_letter_topic(source) == topic else None


def dead_letter(record: SourceRecord, reason: str, detail: str) -> DeadLetter:
    headers = header_pairs(record)
    topic = record.topic() or ""
    headers += [
        ("dlq.topic", topic.encode()),
        ("dlq.partition", str(record.partition()).encode()),
        ("dlq.offset", str(record.offset()).encode()),
        ("dlq.reason", reason.encode()),
        ("dlq.detail", detail.encode()[:1000]),
    ]
    return DeadLetter(dead_letter_topic(topic), _bytes(record.key()), _bytes(record.value()), headers)


def decode_or_dead_letter(
    codec: AvroCodec, record: SourceRecord, reader_schema: dict | None = None
) -> tuple[dict[str, Any], None] | tuple[None, DeadLetter]:
    """``(decoded, None)`` for a good record, ``(None, DeadLetter)`` for one that cannot be decoded."""
    value = _bytes(record.value())
    if value is None:
        return None, _tombstone(record)
    try:
        return codec.decode(value, reader_schema), None
    except CodecError as exc:
        return None, dead_letter(record, exc.reason, str(exc))


def decode_record_or_dead_letter(
    codec: AvroCodec, record: SourceRecord
) -> tuple[AvroRecord, None] | tuple[None, DeadLetter]:
    """``(typed record, None)`` for a good record, ``(None, DeadLetter)`` for one that cannot be decoded
    or whose record type has no class."""
    value = _bytes(record.value())
    if value is None:
        return None, _tombstone(record)
    try:
        return codec.decode_record(value), None
    except CodecError as exc:
        return None, dead_letter(record, exc.reason, str(exc))


def _tombstone(record: SourceRecord) -> DeadLetter:
    return dead_letter(record, "null-value", "a null value (tombstone) where an event was expected")
