"""What the tap tests share: a ``TapRecord`` with thin defaults (name only what a test is about), a small
test record schema (v1, and v2 with a defaulted field added), an in-memory registry and raw records."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from shopflow.taps.records import TapRecord

_DEFAULTS: dict[str, Any] = {
    "topic": "orders", "partition": 0, "offset": 0, "timestamp_ms": 1_764_633_600_000, "key": "k-1", "headers": [],
    "value": {}, "value_format": "avro", "schema": None, "schema_id": None,
}


def tap_record(**fields: Any) -> TapRecord:
    return TapRecord(**{**_DEFAULTS, **fields})


SCHEMA_V1: dict[str, Any] = {
    "type": "record", "name": "TapProbe", "namespace": "shopflow.tests",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
            {"name": "email", "type": "string"}, {"name": "tier", "type": "string"}]}},
    ],
}
SCHEMA_V2: dict[str, Any] = {**SCHEMA_V1, "fields": [*SCHEMA_V1["fields"],
                                                     {"name": "channel", "type": "string", "default": "web"}]}


def probe(n: int, order_id: str | None = None, tier: str = "gold", **extra: Any) -> dict[str, Any]:
    """A TapProbe value with thin defaults."""
    return {"order_id": order_id or f"o-{n}", "n": n, "at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
            "customer": {"email": f"c{n}@example.com", "tier": tier}, **extra}


class MemoryRegistry:
    """The two calls the codec makes of a registry, in memory."""

    def __init__(self) -> None:
        self.schemas: dict[int, dict] = {}

    def register(self, subject: str, schema: dict) -> int:
        for schema_id, known in self.schemas.items():
            if known == schema:
                return schema_id
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict | None:
        return self.schemas.get(schema_id)


@dataclass
class RawMessage:
    """A consumed record as confluent-kafka's Message offers it (what the decoder reads)."""

    value_bytes: bytes | None
    key_bytes: bytes | None = b"k-1"
    header_pairs: list[tuple[str, bytes | None]] = field(default_factory=list)
    topic_name: str = "test-topic"
    partition_no: int = 0
    offset_no: int = 7
    timestamp_ms: int = 1_796_083_200_000

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_no

    def offset(self) -> int:
        return self.offset_no

    def timestamp(self) -> tuple[int, int]:
        return 1, self.timestamp_ms

    def key(self) -> bytes | None:
        return self.key_bytes

    def value(self) -> bytes | None:
        return self.value_bytes

    def headers(self) -> list[tuple[str, bytes | None]]:
        return self.header_pairs
