"""Contract: every .avsc has a record class in its context package (``shopflow.schemas.<context>``) that matches it
and round-trips.

The classes are written by hand, so this is what stops a schema change from leaving them behind:
field names and order, field types, defaults, and an encode/decode through fastavro with sample
values generated from the schema itself (never hand-written per record).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import uuid
from datetime import UTC, datetime
from enum import Enum
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import fastavro
import pytest
from fastavro.schema import expand_schema

from shopflow.schemas import all_schemas, load_schema
from shopflow.schemas.records import AvroRecord, UuidStr, all_records, record_type
from shopflow.topologies.catalog import TOPICS

RECORDS = all_records()
SCHEMAS = all_schemas()
NAMES = sorted(SCHEMAS)

PRIMITIVES: dict[str, Any] = {
    "string": str, "int": int, "long": int, "boolean": bool, "float": float, "double": float, "bytes": bytes,
}
LOGICAL: dict[tuple[str, str], Any] = {("string", "uuid"): UuidStr, ("long", "timestamp-millis"): datetime}

# Beyond 32 bits and beyond a double's exact integers, so a long squeezed into an int or float shows.
LONG_SAMPLE = 2**53 + 1
INT_SAMPLE = 2**31 - 1
WHEN = datetime(2024, 5, 17, 12, 34, 56, 789000, tzinfo=UTC)


def leaf_hint(avro_type: Any) -> Any | None:
    """The Python hint of a primitive or logical Avro type; None for unions and complex types."""
    if isinstance(avro_type, str):
        return PRIMITIVES.get(avro_type)
    if isinstance(avro_type, dict) and isinstance(avro_type["type"], str):
        if "logicalType" in avro_type:
            return LOGICAL.get((avro_type["type"], avro_type["logicalType"]))
        return PRIMITIVES.get(avro_type["type"])
    return None


def non_null(hint: Any) -> Any | None:
    """``T`` for ``T | None``, else None."""
    if get_origin(hint) in (Union, UnionType):
        args = get_args(hint)
        rest = [a for a in args if a is not NoneType]
        if len(args) == 2 and len(rest) == 1:
            return rest[0]
    return None


def kind_of(avro_type: Any) -> str:
    return avro_type if isinstance(avro_type, str) else avro_type["type"]


def record_problems(schema: dict, cls: type) -> list[str]:
    """Every way ``cls`` differs from ``schema`` (expanded: named types inline, full names); empty if none."""
    name = schema["name"]
    if getattr(cls, "AVRO_NAME", None) != name:
        return [f"{name}: {cls.__name__}.AVRO_NAME is {getattr(cls, 'AVRO_NAME', None)!r}"]
    if not (dataclasses.is_dataclass(cls) and issubclass(cls, AvroRecord)):
        return [f"{name}: {cls.__name__} is not an AvroRecord dataclass"]
    avro_fields = schema["fields"]
    py_fields = dataclasses.fields(cls)
    avro_names = [f["name"] for f in avro_fields]
    py_names = [f.name for f in py_fields]
    if avro_names != py_names:
        missing = [n for n in avro_names if n not in py_names]
        extra = [n for n in py_names if n not in avro_names]
        detail = f"missing {missing}, extra {extra}" if missing or extra else "order differs"
        return [f"{name}: {cls.__name__} fields {py_names} vs schema {avro_names}: {detail}"]
    hints = get_type_hints(cls, include_extras=True)
    problems = []
    for af, pf in zip(avro_fields, py_fields, strict=False):  # a count that differs is reported above
        where = f"{name}.{pf.name}"
        problems += type_problems(af["type"], hints[pf.name], where)
        problems += default_problems(af, pf, hints[pf.name], where)
    return problems


def type_problems(avro_type: Any, hint: Any, where: str) -> list[str]:
    if isinstance(avro_type, list):
        if len(avro_type) != 2 or avro_type[0] != "null":
            return [f"{where}: only ['null', T] unions map to Python, not {avro_type}"]
        inner = non_null(hint)
        if inner is None:
            return [f"{where}: the schema allows null but {hint!r} is not optional"]
        return type_problems(avro_type[1], inner, where)
    if non_null(hint) is not None:
        return [f"{where}: {hint!r} is optional but the schema does not allow null"]
    expected = leaf_hint(avro_type)
    if expected is not None:
        return [] if hint == expected else [f"{where}: {hint!r} for Avro {avro_type}, expected {expected!r}"]
    kind = kind_of(avro_type)
    if kind == "record":
        if not (isinstance(hint, type) and issubclass(hint, AvroRecord)):
            return [f"{where}: {hint!r} for record {avro_type['name']}, expected an AvroRecord class"]
        return record_problems(avro_type, hint)
    if kind == "enum":
        if not (isinstance(hint, type) and issubclass(hint, Enum)):
            return [f"{where}: {hint!r} for enum {avro_type['name']}, expected an Enum"]
        problems = []
        if hint.__name__ != avro_type["name"].rpartition(".")[2]:
            problems.append(f"{where}: enum class {hint.__name__} for Avro enum {avro_type['name']}")
        if [m.value for m in hint] != avro_type["symbols"]:
            problems.append(f"{where}: {hint.__name__} symbols {[m.value for m in hint]} vs {avro_type['symbols']}")
        if "default" in avro_type and avro_type["default"] not in hint.__members__:
            problems.append(f"{where}: enum default {avro_type['default']} is not a member of {hint.__name__}")
        return problems
    args = get_args(hint)
    if kind == "array":
        if get_origin(hint) is not tuple or len(args) != 2 or args[1] is not Ellipsis:
            return [f"{where}: {hint!r} for an Avro array, expected tuple[T, ...]"]
        return type_problems(avro_type["items"], args[0], f"{where}[]")
    if kind == "map":
        if get_origin(hint) is not dict or args[0] is not str:
            return [f"{where}: {hint!r} for an Avro map, expected dict[str, T]"]
        return type_problems(avro_type["values"], args[1], f"{where}{{}}")
    return [f"{where}: no Python mapping for Avro {avro_type}"]


def python_default(avro_type: Any, value: Any, hint: Any) -> Any:
    """The value a class field should default to, given the schema's JSON default."""
    if isinstance(avro_type, list):  # a union's default belongs to its first branch
        return None if avro_type[0] == "null" else python_default(avro_type[0], value, hint)
    kind = kind_of(avro_type)
    if kind == "enum":
        return hint(value)
    if kind == "array":
        return tuple(python_default(avro_type["items"], v, get_args(hint)[0]) for v in value)
    if kind == "map":
        return {k: python_default(avro_type["values"], v, get_args(hint)[1]) for k, v in value.items()}
    if kind == "record":
        hints = get_type_hints(hint, include_extras=True)
        return hint(**{f["name"]: python_default(f["type"], value.get(f["name"], f.get("default")), hints[f["name"]])
                       for f in avro_type["fields"]})
    if leaf_hint(avro_type) is datetime:
        return datetime.fromtimestamp(value / 1000, UTC)
    return value


def default_problems(avro_field: dict, py_field: dataclasses.Field, hint: Any, where: str) -> list[str]:
    has_factory = py_field.default_factory is not dataclasses.MISSING
    has_default = has_factory or py_field.default is not dataclasses.MISSING
    if "default" not in avro_field:
        return [f"{where}: the class has a default, the schema none"] if has_default else []
    if not has_default:
        return [f"{where}: the schema has default {avro_field['default']!r}, the class none"]
    expected = python_default(avro_field["type"], avro_field["default"], hint)
    if isinstance(expected, dict) and not has_factory:
        return [f"{where}: a map default needs default_factory"]
    actual = py_field.default_factory() if has_factory else py_field.default
    if type(actual) is not type(expected) or actual != expected:
        return [f"{where}: default {actual!r} vs schema default {expected!r}"]
    return []


def sample(avro_type: Any, hint: Any, path: str, *, minimal: bool) -> Any:
    """A value of ``hint`` for ``avro_type``, varied by the field's path; ``minimal`` leaves optionals null."""
    if isinstance(avro_type, list):
        return None if minimal else sample(avro_type[1], non_null(hint), path, minimal=minimal)
    kind = kind_of(avro_type)
    logical = avro_type.get("logicalType") if isinstance(avro_type, dict) else None
    if logical == "uuid":
        return str(uuid.uuid5(uuid.NAMESPACE_URL, path))
    if logical == "timestamp-millis":
        return WHEN
    if kind == "record":
        return sample_record(avro_type, hint, minimal=minimal)
    if kind == "enum":
        return hint(avro_type["symbols"][-1])
    if kind == "array":
        return tuple(sample(avro_type["items"], get_args(hint)[0], f"{path}[{i}]", minimal=minimal) for i in range(2))
    if kind == "map":
        return {f"k{i}": sample(avro_type["values"], get_args(hint)[1], f"{path}{{{i}}}", minimal=minimal)
                for i in range(2)}
    samples = {"string": f"{path}-sample", "int": INT_SAMPLE, "long": LONG_SAMPLE, "boolean": True,
               "float": 1.5, "double": 2.25, "bytes": path.encode()}
    return samples[kind]


def sample_record(schema: dict, cls: type, *, minimal: bool) -> AvroRecord:
    """An instance of ``cls``; ``minimal`` omits every field the schema gives a default."""
    hints = get_type_hints(cls, include_extras=True)
    return cls(**{f["name"]: sample(f["type"], hints[f["name"]], f"{schema['name']}.{f['name']}", minimal=minimal)
                  for f in schema["fields"] if not (minimal and "default" in f)})


def non_plain(value: Any, path: str = "") -> list[str]:
    """Where ``to_avro`` output holds anything but plain dicts, lists and scalars (no enums, tuples, records)."""
    if type(value) is dict:
        return [p for k, v in value.items() for p in non_plain(v, f"{path}.{k}")]
    if type(value) is list:
        return [p for i, v in enumerate(value) for p in non_plain(v, f"{path}[{i}]")]
    plain = (str, int, bool, float, bytes, datetime, NoneType)
    return [] if type(value) in plain else [f"{path}: {type(value).__name__}"]


def mistyped(value: Any, hint: Any, path: str) -> list[str]:
    """Where a decoded record holds a value whose type is not exactly its field's hint."""
    if (inner := non_null(hint)) is not None:
        return [] if value is None else mistyped(value, inner, path)
    if get_origin(hint) is Annotated:
        return mistyped(value, get_args(hint)[0], path)
    if get_origin(hint) is tuple:
        if type(value) is not tuple:
            return [f"{path}: {type(value).__name__}, expected tuple"]
        return [p for i, v in enumerate(value) for p in mistyped(v, get_args(hint)[0], f"{path}[{i}]")]
    if get_origin(hint) is dict:
        return [] if type(value) is dict else [f"{path}: {type(value).__name__}, expected dict"]
    if type(value) is not hint:
        return [f"{path}: {type(value).__name__}, expected {hint.__name__}"]
    if hint is datetime and value.utcoffset() is None:
        return [f"{path}: naive datetime"]
    if isinstance(value, AvroRecord):
        hints = get_type_hints(hint, include_extras=True)
        return [p for f in dataclasses.fields(value)
                for p in mistyped(getattr(value, f.name), hints[f.name], f"{path}.{f.name}")]
    return []


def test_records_and_schemas_are_the_same_set():
    assert sorted(RECORDS) == NAMES
    # each context's classes sit with its schemas: shopflow.orders.X in shopflow.schemas.orders
    assert all(cls.__module__ == "shopflow.schemas." + name.split(".")[1] for name, cls in RECORDS.items())
    assert all(record_type(name) is RECORDS[name] for name in NAMES)
    with pytest.raises(KeyError, match="shopflow.orders.Nope"):
        record_type("shopflow.orders.Nope")


@pytest.mark.parametrize("fullname", NAMES, ids=NAMES)
def test_record_class_matches_schema(fullname):
    assert fullname in RECORDS, f"no record class for {fullname} in its context package"
    assert record_problems(expand_schema(SCHEMAS[fullname]), RECORDS[fullname]) == []


@pytest.mark.parametrize("minimal", [False, True], ids=["all-fields", "defaults-only"])
@pytest.mark.parametrize("fullname", NAMES, ids=NAMES)
def test_record_round_trips_through_fastavro(fullname, minimal):
    schema, cls = SCHEMAS[fullname], RECORDS[fullname]
    obj = sample_record(expand_schema(schema), cls, minimal=minimal)

    encoded = obj.to_avro()
    assert non_plain(encoded) == []
    buf = io.BytesIO()
    parsed = fastavro.parse_schema(schema)
    fastavro.schemaless_writer(buf, parsed, encoded)
    buf.seek(0)
    decoded = fastavro.schemaless_reader(buf, parsed, None)
    back = cls.from_avro(decoded)

    assert back == obj
    assert mistyped(back, cls, fullname) == []


def _rename(fields: list[dict], old: str, new: str) -> None:
    next(f for f in fields if f["name"] == old)["name"] = new


def _order_line(schema: dict) -> dict:
    return next(f for f in schema["fields"] if f["name"] == "lines")["type"]["items"]


def _field(schema: dict, name: str) -> dict:
    return next(f for f in schema["fields"] if f["name"] == name)


DRIFTS = [
    # (id, record, change to a copy of its schema, fragment the comparison must report)
    ("field renamed", "shopflow.orders.OrderPlaced", lambda s: _rename(s["fields"], "user_id", "customer_id"),
     "missing ['customer_id'], extra ['user_id']"),
    ("nested field renamed", "shopflow.orders.OrderPlaced", lambda s: _rename(_order_line(s)["fields"], "sku", "item"),
     "shopflow.common.OrderLine: OrderLine fields"),
    ("fields reordered", "shopflow.carts.ClearCart", lambda s: s["fields"].reverse(), "order differs"),
    ("type changed", "shopflow.carts.CartExpired", lambda s: _field(s, "idle_ms").update(type="string"),
     "shopflow.carts.CartExpired.idle_ms: <class 'int'> for Avro string"),
    ("made optional", "shopflow.carts.AddCartItem",
     lambda s: _field(s, "sku").update(type=["null", "string"], default=None),
     "shopflow.carts.AddCartItem.sku: the schema allows null"),
    ("default dropped", "shopflow.orders.OrderCancelled", lambda s: _field(s, "refunded").pop("default"),
     "OrderCancelled.refunded: the class has a default, the schema none"),
    ("default changed", "shopflow.orders.OrderCancelled", lambda s: _field(s, "refunded").update(default=True),
     "default False vs schema default True"),
    ("enum symbol added", "shopflow.users.UserRegistered",
     lambda s: _field(s, "role")["type"]["symbols"].append("AUDITOR"), "Role symbols"),
]


@pytest.mark.parametrize("fullname,change,expected", [d[1:] for d in DRIFTS], ids=[d[0] for d in DRIFTS])
def test_drift_is_reported(fullname, change, expected):
    drifted = copy.deepcopy(load_schema(fullname))
    change(drifted)
    problems = record_problems(expand_schema(drifted), RECORDS[fullname])
    assert any(expected in p for p in problems), problems


CARRIED = [(topic, record.AVRO_NAME) for topic in TOPICS for record in topic.values]


@pytest.mark.integration
def test_every_record_round_trips_through_the_registry_and_the_broker(
    topic_factory, producer, consume, codec, registry
):
    # One test topic stands in for all catalog topics; each record keeps its catalog subject.
    topic = topic_factory("contracts")
    sent = []
    for catalog_topic, fullname in CARRIED:
        obj = sample_record(expand_schema(SCHEMAS[fullname]), RECORDS[fullname], minimal=False)
        value = codec.encode(catalog_topic, obj)
        producer.produce(topic, key=fullname.encode(), value=value)
        sent.append(obj)
    assert producer.flush(10) == 0

    received = consume(topic, len(sent))

    for obj, msg, (_, fullname) in zip(sent, received, CARRIED, strict=True):
        assert msg.key() == fullname.encode()
        schema_id = codec.schema_id(msg.value())
        assert registry.schema_by_id(schema_id)["name"] == fullname.rsplit(".", 1)[1]
        assert RECORDS[fullname].from_avro(codec.decode(msg.value())) == obj
