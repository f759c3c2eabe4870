"""Avro schemas as Arrow types, for the Parquet export of taps.

The Arrow schema of a Parquet file comes from the Avro schema the records were written with (the
registry's, by schema id), not from guessing on the values: a topic's columns keep their types even
when the first rows hold nulls. Avro -> Arrow: int/long/float/double/boolean/string/bytes as
themselves, timestamp-millis/-micros as UTC timestamps, local-timestamp-* without a zone, date,
time-*, decimal as decimal128 (decimal256 beyond 38 digits), uuid as string, enum as a dictionary of
strings, fixed as fixed-size binary, record as struct, array as list, map as map<string, _>, a union
with null as its other branch (every Arrow field is nullable). A union of several non-null branches
has no Parquet type analysts can use, so it becomes JSON text.

Each type comes with a converter for the values fastavro decodes that Arrow does not take as they
are (a uuid.UUID, a multi-branch union's value); None where values pass untouched, so the common
case costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from shopflow.taps.records import json_bytes

Converter = Callable[[Any], Any]

_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(), "boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
    "double": pa.float64(), "bytes": pa.binary(), "string": pa.string(),
}
_LOGICAL: dict[str, pa.DataType] = {
    "timestamp-millis": pa.timestamp("ms", tz="UTC"), "timestamp-micros": pa.timestamp("us", tz="UTC"),
    "local-timestamp-millis": pa.timestamp("ms"), "local-timestamp-micros": pa.timestamp("us"),
    "date": pa.date32(), "time-millis": pa.time32("ms"), "time-micros": pa.time64("us"),
    "uuid": pa.string(),
}


class UnsupportedAvroType(ValueError):
    """An Avro schema this mapping cannot turn into Arrow (the message names the type)."""


@dataclass(frozen=True, slots=True)
class ArrowType:
    type: pa.DataType
    convert: Converter | None = None


def record_columns(schema: dict[str, Any]) -> list[tuple[str, ArrowType]]:
    """The top-level fields of a record schema as (column name, Arrow type and converter)."""
    named: dict[str, Any] = {}
    _remember(schema, "", named)
    namespace = _fullname(schema, "").rpartition(".")[0]
    return [(f["name"], arrow_type(f["type"], named, namespace)) for f in schema["fields"]]


def arrow_type(schema: Any, named: dict[str, Any], namespace: str = "") -> ArrowType:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return ArrowType(_PRIMITIVES[schema])
        found = named.get(schema) or named.get(f"{namespace}.{schema}")
        if found is None:
            raise UnsupportedAvroType(f"unknown named type {schema!r}")
        return arrow_type(found, named, namespace)
    if isinstance(schema, list):
        return _union(schema, named, namespace)
    kind = schema["type"]
    logical = schema.get("logicalType")
    if logical == "uuid":
        return ArrowType(pa.string(), _uuid_text)
    if logical in _LOGICAL:
        return ArrowType(_LOGICAL[logical])
    if logical == "decimal":
        precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
        return ArrowType(pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale))
    if isinstance(kind, (dict, list)):
        return arrow_type(kind, named, namespace)
    if kind in _PRIMITIVES:
        return ArrowType(_PRIMITIVES[kind])
    if kind in ("record", "error"):
        return _record(schema, named, namespace)
    if kind == "enum":
        _remember(schema, namespace, named)
        return ArrowType(pa.dictionary(pa.int32(), pa.string()))
    if kind == "fixed":
        _remember(schema, namespace, named)
        return ArrowType(pa.binary(int(schema["size"])))
    if kind == "array":
        items = arrow_type(schema["items"], named, namespace)
        item = items.convert
        return ArrowType(pa.list_(items.type), None if item is None else lambda v: [item(x) for x in v])
    if kind == "map":
        values = arrow_type(schema["values"], named, namespace)
        value = values.convert
        return ArrowType(pa.map_(pa.string(), values.type),
                         None if value is None else lambda v: {k: value(x) for k, x in v.items()})
    raise UnsupportedAvroType(f"Avro type {kind!r} has no Arrow mapping")


def _record(schema: dict[str, Any], named: dict[str, Any], namespace: str) -> ArrowType:
    full = _remember(schema, namespace, named)
    inner = full.rpartition(".")[0]
    fields = [(f["name"], arrow_type(f["type"], named, inner)) for f in schema["fields"]]
    struct = pa.struct([pa.field(name, t.type) for name, t in fields])
    converters = [(name, t.convert) for name, t in fields if t.convert is not None]
    if not converters:
        return ArrowType(struct)

    def convert(value: dict[str, Any]) -> dict[str, Any]:
        out = dict(value)
        for name, fn in converters:
            if out.get(name) is not None:
                out[name] = fn(out[name])
        return out

    return ArrowType(struct, convert)


def _union(branches: list[Any], named: dict[str, Any], namespace: str) -> ArrowType:
    others = [b for b in branches if b != "null"]
    if len(others) == 1:
        return arrow_type(others[0], named, namespace)
    for branch in others:  # named branches must still be known to later references
        if isinstance(branch, dict) and "name" in branch:
            _remember(branch, namespace, named)
    return ArrowType(pa.string(), json_text)


def _fullname(schema: dict[str, Any], namespace: str) -> str:
    name = schema["name"]
    if "." in name:
        return name
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _remember(schema: dict[str, Any], namespace: str, named: dict[str, Any]) -> str:
    full = _fullname(schema, namespace)
    named.setdefault(full, schema)
    named.setdefault(schema["name"].rpartition(".")[2], schema)
    return full


def _uuid_text(value: Any) -> str:
    return str(value)


def json_text(value: Any) -> str:
    """A value as compact JSON text in the tap's shape (CSV cells and Arrow columns that hold nested or
    mixed values); text stays as it is."""
    if isinstance(value, str):
        return value
    return json_bytes(value).decode()
