"""Dead letters: a record that cannot be decoded or processed is set aside, never a crashed stream.

The dead-letter record keeps the original key and value bytes untouched (so it can be replayed
once the cause is fixed) and says where it came from and why in headers:
``dlq.topic``, ``dlq.partition``, ``dlq.offset``, ``dlq.reason`` (a short code such as
``bad-magic-byte``) and ``dlq.detail`` (the message). Every stream of ShopFlow, Faust agent or
plain consumer loop, goes through ``decode_or_dead_letter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shopflow.schemas.codec import AvroCodec, CodecError
from shopflow.topologies.catalog import by_name


class SourceRecord(Protocol):
    """What confluent-kafka's Message offers (and a Faust message can be adapted to)."""

    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter_topic(source_topic: str) -> str:
    """The catalog's dead-letter topic of a topic (``<name>.dlq``), also for topics not in the catalog."""
    try:
        return by_name(source_topic).dead_letter
    except KeyError:
        return f"{source_topic}.dlq"


def dead_letter(record: SourceRecord, reason: str, detail: str) -> DeadLetter:
    headers = list(record.headers() or [])
    headers += [
        ("dlq.topic", record.topic().encode()),
        ("dlq.partition", str(record.partition()).encode()),
        ("dlq.offset", str(record.offset()).encode()),
        ("dlq.reason", reason.encode()),
        ("dlq.detail", detail.encode()[:1000]),
    ]
    return DeadLetter(dead_letter_topic(record.topic()), record.key(), record.value(), headers)


def decode_or_dead_letter(codec: AvroCodec, record: SourceRecord, reader_schema: dict | None = None):
    """``(decoded, None)`` for a good record, ``(None, DeadLetter)`` for one that cannot be decoded."""
    value = record.value()
    if value is None:
        return None, dead_letter(record, "null-value", "a null value (tombstone) where an event was expected")
    try:
        return codec.decode(value, reader_schema), None
    except CodecError as exc:
        return None, dead_letter(record, exc.reason, str(exc))
