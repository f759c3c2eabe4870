"""The one serializer of ShopFlow: Confluent framing around fastavro bodies.

Every record on a ShopFlow topic is ``0x00 | schema id (4 bytes, big endian) | Avro body``, the
framing Confluent's serializers use, so any Confluent-compatible tool can read the topics.
Encoding registers the writer schema once and caches its id; decoding resolves the writer
schema by id (cached) and, when asked, into a reader schema. A record that cannot be decoded
raises a specific ``CodecError`` that a stream turns into a dead-letter record.

``encode(topic, record)`` is how every producer of ShopFlow (agents, replay, clients, the edge, the
demo) writes a typed record: its subject comes from the topic (TopicRecordNameStrategy), its writer
schema from its class. ``decode_record`` is the other end: the typed record of a framed value.
"""

from __future__ import annotations

import io
import struct
from typing import TYPE_CHECKING, Any

import fastavro

from shopflow.schemas import load_schema
from shopflow.schemas.records import AvroRecord, record_type
from shopflow.schemas.registry import SchemaRegistry

if TYPE_CHECKING:  # the catalog imports the records; the codec needs the Topic type only
    from shopflow.topologies.catalog import Topic

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


class UnknownRecord(CodecError):
    reason = "unknown-record"


class AvroCodec:
    def __init__(self, registry: SchemaRegistry):
        self.registry = registry
        self._writers: dict[tuple[str, int], tuple[bytes, dict]] = {}
        # (topic name, record class) -> (header, parsed schema): one lookup per record on the hot path
        self._record_writers: dict[tuple[str, type[AvroRecord]], tuple[bytes, dict]] = {}
        self._parsed: dict[int, dict] = {}
        self._resolved: dict[tuple[int, int], dict] = {}

    def _writer(self, subject: str, schema: dict) -> tuple[bytes, dict]:
        key = (subject, id(schema))
        cached = self._writers.get(key)
        if cached is None:
            schema_id = self.registry.register(subject, schema)
            cached = (_HEADER.pack(MAGIC, schema_id), _parse(schema))
            self._writers[key] = cached
            self._parsed.setdefault(schema_id, cached[1])
        return cached

    def encode(self, topic: Topic, record: AvroRecord, avro: dict[str, Any] | None = None) -> bytes:
        """Frame a typed record for ``topic``: its class's schema under the topic's subject for it.
        ``avro``: the record's ``to_avro()`` when the caller has made it already."""
        writer = self._record_writers.get((topic.name, type(record))) or self.warm(topic, type(record))
        return _frame(writer, record.to_avro() if avro is None else avro)

    def warm(self, topic: Topic, record: type[AvroRecord]) -> tuple[bytes, dict[str, Any]]:
        """Register a record type's schema for ``topic`` now (a blocking registry call the first time), so
        no later encode waits for it; the framing header and parsed schema it encodes with."""
        writer = self._record_writers[(topic.name, record)] = self._writer(topic.subject(record),
                                                                           load_schema(record.AVRO_NAME))
        return writer

    def encode_value(self, subject: str, schema: dict, value: dict[str, Any]) -> bytes:
        """Frame a plain ``value`` written with ``schema``, registered under ``subject``: for tools that
        write schemas other than the tree's (compatibility checks, benchmarks of the codec itself)."""
        return _frame(self._writer(subject, schema), value)

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
            parsed = self._parsed[schema_id] = _parse(schema)
        return parsed

    def record_name(self, data: bytes) -> str:
        """The full name of the record a framed value was written as (its writer schema's name)."""
        return self._writer_schema(self.schema_id(data))["name"]

    def decode_record(self, data: bytes) -> AvroRecord:
        """The typed record of a framed value, of the class its writer schema names. Read with the writer
        schema (no resolution on the hot path): a field the class does not have is left out, and one the
        writer did not have takes the class's default, as Avro's resolution would."""
        name = self.record_name(data)
        try:
            cls = record_type(name)
        except KeyError:
            raise UnknownRecord(f"{name} has no record class in shopflow.schemas") from None
        try:
            return cls.from_avro(self.decode(data))
        except TypeError as exc:  # a field without a default the writer did not write
            raise CodecError(f"{name} cannot be read as a record: {exc}") from None

    def decode(self, data: bytes, reader_schema: dict | None = None) -> dict:
        """Decode a framed record, resolved into ``reader_schema`` when given."""
        schema_id = self.schema_id(data)
        writer = self._writer_schema(schema_id)
        reader = None
        if reader_schema is not None:
            key = (schema_id, id(reader_schema))
            reader = self._resolved.get(key)
            if reader is None:
                reader = self._resolved[key] = _parse(reader_schema)
        try:
            decoded = fastavro.schemaless_reader(io.BytesIO(memoryview(data)[_HEADER.size:]), writer, reader)
        except (EOFError, StopIteration, IndexError) as exc:
            raise TruncatedRecord(f"Avro body ended early for schema id {schema_id}: {exc!r}") from None
        except (ValueError, UnicodeDecodeError, fastavro.read.SchemaResolutionError) as exc:
            raise CodecError(f"Avro body does not match schema id {schema_id}: {exc}") from None
        if not isinstance(decoded, dict):  # every ShopFlow schema is a record
            raise CodecError(f"schema id {schema_id} is not a record schema")
        return decoded


def _parse(schema: dict[str, Any]) -> dict[str, Any]:
    parsed = fastavro.parse_schema(schema)
    if not isinstance(parsed, dict):
        raise TypeError("a ShopFlow schema is a record schema")
    return parsed


def _frame(writer: tuple[bytes, dict], value: dict[str, Any]) -> bytes:
    header, parsed = writer
    buf = io.BytesIO()
    buf.write(header)
    fastavro.schemaless_writer(buf, parsed, value)
    return buf.getvalue()
