"""Typed Python records for the Avro contracts: the generic machinery and the shared value types.

Each context's records sit with its schemas, one frozen dataclass per .avsc, in
``shopflow.schemas.<context>`` (``schemas/orders/__init__.py`` beside ``schemas/orders/*.avsc``);
this module holds what they share: ``AvroRecord`` (converters to and from fastavro dicts), the
``shopflow.common`` value types (Money, OrderLine, Address) and ``record_type`` (a full name to its class).

Each class mirrors its schema field for field, in the same order, so ``tests/schemas/test_records_contract.py``
can hold the two together. The wire codec works on plain dicts: ``record.to_avro()`` gives the dict to
encode and ``Record.from_avro(decoded)`` takes what fastavro decodes (uuid as ``uuid.UUID``,
timestamp-millis as an aware UTC ``datetime``, enums as ``str``). ``from_avro`` also takes a timestamp as
epoch milliseconds, the form a record takes in a table's JSON (``tables.values.encode``).

A schema may put a defaulted field before a required one (``occurred_at`` always comes last), which a
positional dataclass cannot express; those classes are ``kw_only`` so the field order still matches.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, ClassVar, Self, Union, get_args, get_origin, get_type_hints

UUID_LOGICAL = "avro:uuid"
# The canonical string form of a uuid; the marker tells from_avro to accept the uuid.UUID fastavro decodes.
UuidStr = Annotated[str, UUID_LOGICAL]

_Convert = Callable[[Any], Any]
_Plan = tuple[tuple[str, _Convert | None], ...]
_PLANS: dict[type, tuple[_Plan, _Plan]] = {}
_PLAIN = (str, int, bool, float, bytes, datetime)
# Per class, built on first use from its plans: a function writing its dict in one expression, and one
# reading a dict that has every field (the hot path: each record an agent consumes or emits).
_TO_AVRO: dict[type, Callable[[Any], dict[str, Any]]] = {}
_FROM_FULL: dict[type, Callable[[Mapping[str, Any]], Any]] = {}


class AvroRecord:
    """Base of every record: generic converters driven by a per-class plan built on first use."""

    __slots__ = ()
    AVRO_NAME: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """A plain dict for fastavro: nested records as dicts, enums as str, tuples as lists."""
        write = _TO_AVRO.get(type(self)) or _compile(type(self))[0]
        return write(self)

    @classmethod
    def from_avro(cls, d: Mapping[str, Any]) -> Self:
        """The record from a fastavro-decoded dict; a missing key falls back to the field's default."""
        read = _FROM_FULL.get(cls) or _compile(cls)[1]
        try:
            record: Self = read(d)
            return record
        except KeyError:  # a writer without some field: each missing one takes its default
            kwargs: dict[str, Any] = {}
            for name, dec in _plans(cls)[1]:
                if name in d:
                    value = d[name]
                    kwargs[name] = value if dec is None else dec(value)
            return cls(**kwargs)


def _plans(cls: type[AvroRecord]) -> tuple[_Plan, _Plan]:
    plans = _PLANS.get(cls)
    if plans is None:
        hints = get_type_hints(cls, include_extras=True)
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        plans = _PLANS[cls] = (
            tuple((n, _encoder(hints[n])) for n in names),
            tuple((n, _decoder(hints[n])) for n in names),
        )
    return plans


def _compile(cls: type[AvroRecord]) -> tuple[Callable[[Any], dict[str, Any]], Callable[[Mapping[str, Any]], Any]]:
    """The class's plans as two straight-line functions (generated once): a loop over the plan per record
    cost as much as the rest of an agent's handling of it."""
    encoders, decoders = _plans(cls)
    scope: dict[str, Any] = {"cls": cls}
    items, kwargs = [], []
    for i, (name, enc) in enumerate(encoders):
        scope[f"e{i}"] = enc
        items.append(f"{name!r}: self.{name}" if enc is None else f"{name!r}: e{i}(self.{name})")
    for i, (name, dec) in enumerate(decoders):
        scope[f"d{i}"] = dec
        kwargs.append(f"{name}=d[{name!r}]" if dec is None else f"{name}=d{i}(d[{name!r}])")
    source = (f"def to_avro(self):\n    return {{{', '.join(items)}}}\n"
              f"def from_full(d):\n    return cls({', '.join(kwargs)})\n")
    exec(source, scope)  # noqa: S102 - code built here from the class's own field names
    _TO_AVRO[cls], _FROM_FULL[cls] = scope["to_avro"], scope["from_full"]
    return scope["to_avro"], scope["from_full"]


def _optional_arg(hint: Any) -> Any | None:
    """``T`` for a hint ``T | None``, else None."""
    if get_origin(hint) not in (Union, UnionType):
        return None
    args = get_args(hint)
    rest = [a for a in args if a is not NoneType]
    if len(args) != 2 or len(rest) != 1:
        raise TypeError(f"only T | None unions map to Avro here, not {hint!r}")
    return rest[0]


def _nullable(conv: _Convert | None) -> _Convert | None:
    if conv is None:
        return None
    return lambda v: None if v is None else conv(v)


def _encoder(hint: Any) -> _Convert | None:
    origin = get_origin(hint)
    if origin is Annotated:
        return _encoder(get_args(hint)[0])
    if (inner := _optional_arg(hint)) is not None:
        return _nullable(_encoder(inner))
    if origin is tuple:
        item = _encoder(get_args(hint)[0])
        return list if item is None else (lambda v: [item(x) for x in v])
    if origin is dict:
        return dict
    if isinstance(hint, type):
        if issubclass(hint, AvroRecord):
            return AvroRecord.to_avro
        if issubclass(hint, Enum):
            return lambda v: v.value
        if issubclass(hint, _PLAIN):
            return None
    raise TypeError(f"no Avro conversion for {hint!r}")


def _uuid_str(v: Any) -> Any:
    return str(v) if isinstance(v, uuid.UUID) else v


def _timestamp(v: Any) -> datetime:
    return v if isinstance(v, datetime) else datetime_of_ms(v)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def datetime_of_ms(ms: int) -> datetime:
    """An aware UTC datetime of epoch milliseconds (the Avro timestamp-millis value); exact, no float."""
    return _EPOCH + timedelta(milliseconds=ms)


def ms_of(at: datetime) -> int:
    """Epoch milliseconds of an aware datetime, as timestamp-millis encodes it; exact, no float."""
    return (at - _EPOCH) // _MS


def _decoder(hint: Any) -> _Convert | None:
    origin = get_origin(hint)
    if origin is Annotated:
        base, *meta = get_args(hint)
        return _uuid_str if UUID_LOGICAL in meta else _decoder(base)
    if (inner := _optional_arg(hint)) is not None:
        return _nullable(_decoder(inner))
    if origin is tuple:
        item = _decoder(get_args(hint)[0])
        return tuple if item is None else (lambda v: tuple([item(x) for x in v]))
    if origin is dict:
        return dict
    if isinstance(hint, type):
        if issubclass(hint, AvroRecord):
            return hint.from_avro
        if issubclass(hint, Enum):
            return hint
        if issubclass(hint, datetime):
            return _timestamp
        if issubclass(hint, _PLAIN):
            return None
    raise TypeError(f"no Avro conversion for {hint!r}")


# -- shared nested types (shopflow.common) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Money(AvroRecord):
    """An integer count of minor units of an ISO 4217 currency (1999 EUR is 19.99 EUR); never a float."""

    AVRO_NAME: ClassVar[str] = "shopflow.common.Money"
    amount_minor: int
    currency: str

    @classmethod
    def of_stored(cls, stored: Mapping[str, Any] | None) -> Money:
        """From an entity's stored ``{amount_minor, currency}``; none stored is nothing, in no currency."""
        return cls(**stored) if stored else cls(0, "")


@dataclass(frozen=True, slots=True)
class OrderLine(AvroRecord):
    """One line of an order: units of a sku at the unit price when the order was placed."""

    AVRO_NAME: ClassVar[str] = "shopflow.common.OrderLine"
    sku: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class Address(AvroRecord):
    """A postal delivery address."""

    AVRO_NAME: ClassVar[str] = "shopflow.common.Address"
    name: str
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    country: str


# The context packages holding record classes: one per folder of schemas.
CONTEXTS = ("carts", "catalog", "files", "inventory", "notifications", "orders", "payments", "users")


@cache
def all_records() -> dict[str, type[AvroRecord]]:
    """Every context's record classes by full name (the shared value types are not records of a topic)."""
    out: dict[str, type[AvroRecord]] = {}
    for context in CONTEXTS:
        module = importlib.import_module(f"shopflow.schemas.{context}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, AvroRecord) and obj.__module__ == module.__name__:
                out[obj.AVRO_NAME] = obj
    return out


def record_type(fullname: str) -> type[AvroRecord]:
    """The record class for a schema's full name, e.g. ``shopflow.orders.OrderPlaced``."""
    try:
        return all_records()[fullname]
    except KeyError:
        raise KeyError(f"no record class for {fullname}") from None
