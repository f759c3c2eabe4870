"""The one serializer of ShopFlow: Confluent framing around fastavro bodies.

Every record on a ShopFlow topic is ``0x00 | schema id (4 bytes, big endian) | Avro body``, the
framing Confluent's serializers use, so any Confluent-compatible tool can read the topics.
Encoding registers the writer schema once and caches its id; decoding resolves the writer
schema by id (cached) and, when asked, into a reader schema. A record that cannot be decoded
raises a specific ``CodecError`` that a stream turns into a dead-letter record.
"""

from __future__ import annotations

import io
import struct

import fastavro

from shopflow.schemas.registry import SchemaRegistry

MAGIC = 0
_HEADER = struct.Struct(">bI")


class CodecError(Exception):
    """A record that cannot be decoded; ``reason`` is a short code for dead-letter headers."""

    reason = "undecodable"


class BadMagicByte(CodecError):
    reason = "bad-magic-byte"


class TruncatedRecord(CodecError):
    reason = "truncated"


class UnknownSchemaId(CodecError):
    reason = "unknown-schema-id"


class AvroCodec:
    def __init__(self, registry: SchemaRegistry):
        self.registry = registry
        self._writers: dict[tuple[str, int], tuple[bytes, dict]] = {}
        self._parsed: dict[int, dict] = {}
        self._resolved: dict[tuple[int, int], dict] = {}

    def _writer(self, subject: str, schema: dict) -> tuple[bytes, dict]:
        key = (subject, id(schema))
        cached = self._writers.get(key)
        if cached is None:
            schema_id = self.registry.register(subject, schema)
            cached = (_HEADER.pack(MAGIC, schema_id), fastavro.parse_schema(schema))
            self._writers[key] = cached
            self._parsed.setdefault(schema_id, cached[1])
        return cached

    def encode(self, subject: str, schema: dict, value: dict) -> bytes:
        """Frame ``value`` written with ``schema``, registered under ``subject``."""
        header, parsed = self._writer(subject, schema)
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, value)
        return buf.getvalue()

    def schema_id(self, data: bytes) -> int:
        if len(data) < _HEADER.size:
            raise TruncatedRecord(f"{len(data)} bytes is shorter than the {_HEADER.size}-byte Confluent header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise BadMagicByte(f"first byte is {data[0]:#04x}, not the Confluent magic byte 0x00")
        return schema_id

    def _writer_schema(self, schema_id: int) -> dict:
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            schema = self.registry.schema_by_id(schema_id)
            if schema is None:
                raise UnknownSchemaId(f"schema id {schema_id} is not in the registry")
            parsed = self._parsed[schema_id] = fastavro.parse_schema(schema)
        return parsed

    def record_name(self, data: bytes) -> str:
        """The full name of the record a framed value was written as (its writer schema's name)."""
        return self._writer_schema(self.schema_id(data))["name"]

    def decode(self, data: bytes, reader_schema: dict | None = None) -> dict:
        """Decode a framed record, resolved into ``reader_schema`` when given."""
        schema_id = self.schema_id(data)
        writer = self._writer_schema(schema_id)
        reader = None
        if reader_schema is not None:
            key = (schema_id, id(reader_schema))
            reader = self._resolved.get(key)
            if reader is None:
                reader = self._resolved[key] = fastavro.parse_schema(reader_schema)
        try:
            return fastavro.schemaless_reader(io.BytesIO(memoryview(data)[_HEADER.size:]), writer, reader)
        except (EOFError, StopIteration, IndexError) as exc:
            raise TruncatedRecord(f"Avro body ended early for schema id {schema_id}: {exc!r}") from None
        except (ValueError, UnicodeDecodeError, fastavro.read.SchemaResolutionError) as exc:
            raise CodecError(f"Avro body does not match schema id {schema_id}: {exc}") from None
