"""Masking personal data in taps: fields marked ``"shopflow.personal": "<kind>"`` in the ``.avsc`` files.

A tap shows a marked value as a stable pseudonym, ``"<kind>:" + 10 hex of HMAC-SHA256(secret, value)``,
so an analyst can still count and join on it but never read it; only a caller with the
``taps.unmask`` permission gets a tap without a ``Masker``.

The marks of a record are those of the working tree's ``.avsc`` of the same full name united with
those of the schema the record was written with: a record written before a field was marked is
masked as well, and a mark that only a newer writer carries is honoured too. Each (record, schema
id) is compiled once into a tree of the paths to mask, so a record without personal fields costs a
dict lookup and passes through as the same object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import orjson

from shopflow.schemas import all_schemas
from shopflow.taps.records import TapRecord

if TYPE_CHECKING:
    from rich.table import Table

    from shopflow.schemas.codec import AvroCodec
    from shopflow.settings import Settings

PERSONAL = "shopflow.personal"
# free-text: a field whose content is written by or about a person (e.g. a notification's template
# values), masked whole because no parser can tell which part of it is personal
KINDS = frozenset({"email", "name", "address", "phone", "payment-token", "ip", "free-text"})
SECRET_NAME = "SHOPFLOW_TAP_MASK_SECRET"
PSEUDONYM_HEX = 10

# A path step: a field name, ITEMS for every element of an array, VALUES for every value of a map.
ITEMS, VALUES = "[]", "{}"
Path = tuple[str, ...]


class UnknownPersonalKind(ValueError):
    """A ``shopflow.personal`` property with a kind the masker does not know."""


@dataclass(frozen=True, slots=True)
class PersonalField:
    """One marked field: the record's full name, the dotted path in its value, the kind of data."""

    record: str
    path: str
    kind: str


# The compiled form of a record's marks: a kind (mask this value whole) or, per field / ITEMS /
# VALUES step, the plan below it.
Plan = str | dict[str, "Plan"]


def marks_of(schema: Mapping[str, Any], record: str = "") -> dict[Path, str]:
    """The marked paths of a schema (a record schema's JSON) and their kinds; unions are transparent,
    so a mark inside ``["null", Address]`` is found at ``shipping_address.name``."""
    marks: dict[Path, str] = {}
    _collect(schema, (), _Named(), frozenset(), marks, record or str(schema.get("name", "")))
    return marks


class _Named(dict[str, Any]):
    """Named types met so far, by full name, so a later reference by name can be followed."""

    def add(self, schema: dict[str, Any], namespace: str) -> str:
        name = schema["name"]
        full = name if "." in name else ".".join(filter(None, (schema.get("namespace", namespace), name)))
        self.setdefault(full, schema)
        return full

    def find(self, reference: str) -> tuple[str, Any] | None:
        if reference in self:
            return reference, self[reference]
        return next(((k, v) for k, v in self.items() if k.rpartition(".")[2] == reference), None)


def _collect(schema: Any, path: Path, named: _Named, expanding: frozenset[str], marks: dict[Path, str],
             record: str, namespace: str = "") -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, path, named, expanding, marks, record, namespace)
        return
    if isinstance(schema, str):
        found = named.find(schema)
        if found is None or found[0] in expanding:  # a primitive, or a recursive reference
            return
        schema = found[1]
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in ("record", "error"):
        full = named.add(schema, namespace)
        namespace = full.rpartition(".")[0]
        for field in schema.get("fields", []):
            step = (*path, field["name"])
            mark = field.get(PERSONAL)
            if mark is None:
                _collect(field["type"], step, named, expanding | {full}, marks, record, namespace)
            elif mark in KINDS:
                marks[(*step, *_container_steps(field["type"]))] = mark
            else:
                raise UnknownPersonalKind(
                    f"{record}.{'.'.join(step)}: {PERSONAL} is {mark!r}; use one of {', '.join(sorted(KINDS))}")
    elif kind in ("enum", "fixed"):
        named.add(schema, namespace)
    elif kind == "array":
        _collect(schema["items"], (*path, ITEMS), named, expanding, marks, record, namespace)
    elif kind == "map":
        _collect(schema["values"], (*path, VALUES), named, expanding, marks, record, namespace)
    elif isinstance(kind, (dict, list)):
        _collect(kind, path, named, expanding, marks, record, namespace)


def _container_steps(schema: Any) -> Path:
    """A mark on an array or map field masks each element or value, so the field keeps its shape (a map of
    pseudonyms is still a map for CSV columns and Parquet types)."""
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        schema = branches[0] if len(branches) == 1 else None
    if isinstance(schema, dict) and schema.get("type") == "array":
        return (ITEMS, *_container_steps(schema["items"]))
    if isinstance(schema, dict) and schema.get("type") == "map":
        return (VALUES, *_container_steps(schema["values"]))
    return ()


def compile_plan(marks: Mapping[Path, str]) -> dict[str, Plan]:
    """The tree of steps to walk for ``marks``; a path marked whole wins over marks below it."""
    root: dict[str, Plan] = {}
    for path, kind in sorted(marks.items(), key=lambda item: len(item[0])):
        node: Plan = root
        for step in path[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(step, {})
        else:
            if isinstance(node, dict):
                node.setdefault(path[-1], kind)
    return root


class Masker:
    """Masks the personal fields of tap records; ``mask`` returns the record itself when it has none."""

    def __init__(self, secret: str | bytes, writer_schema: Callable[[int], Mapping[str, Any] | None] | None = None,
                 schemas: Mapping[str, Mapping[str, Any]] | None = None):
        key = secret.encode() if isinstance(secret, str) else secret
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)
        self._writer_schema = writer_schema
        self._local = {name: marks_of(schema, name) for name, schema in (schemas or all_schemas()).items()}
        self._plans: dict[tuple[str, int | None], dict[str, Plan]] = {}
        # repeated values (a test card token, a city) are common: their digests are kept
        self._cached = lru_cache(maxsize=65_536)(self._pseudonym)

    @classmethod
    def from_settings(cls, settings: Settings, codec: AvroCodec | None = None) -> Masker:
        """The masker of this installation: its secret (made once into ``<home>/secrets.env``) and, with a
        codec, the registry's writer schemas for records written under other versions."""
        from shopflow.settings import ensure_local_secret

        secret = ensure_local_secret(settings.home, SECRET_NAME, 32).get_secret_value()
        return cls(secret, codec.registry.schema_by_id if codec is not None else None)

    def fields(self) -> list[PersonalField]:
        """Every field marked personal in the working tree's schemas, by record and path."""
        return _as_fields(self._local)

    def pseudonym(self, kind: str, value: Any) -> str:
        """``<kind>:`` + the first hex digits of HMAC-SHA256(secret, value)."""
        return self._cached(kind, value) if isinstance(value, str) else self._pseudonym(kind, value)

    def _pseudonym(self, kind: str, value: Any) -> str:
        mac = self._hmac.copy()
        mac.update((value if isinstance(value, str) else _canonical(value)).encode())
        return f"{kind}:{mac.hexdigest()[:PSEUDONYM_HEX]}"

    def plan(self, record: str, schema_id: int | None) -> dict[str, Plan]:
        """The compiled marks of ``record`` as written with ``schema_id`` (cached)."""
        key = (record, schema_id)
        plan = self._plans.get(key)
        if plan is None:
            marks = dict(self._writer_marks(record, schema_id))
            marks.update(self._local.get(record, {}))  # the working tree's kind wins over an older writer's
            plan = self._plans[key] = compile_plan(marks)
        return plan

    def _writer_marks(self, record: str, schema_id: int | None) -> dict[Path, str]:
        if schema_id is None or self._writer_schema is None:
            return {}
        schema = self._writer_schema(schema_id)
        return marks_of(schema, record) if schema is not None else {}

    def mask(self, record: TapRecord) -> TapRecord:
        """``record`` with its marked values replaced by pseudonyms (a dead letter's decoded original
        too: it carries the original's schema); null stays null; text and hex values pass as they are."""
        if record.schema is None or not isinstance(record.value, dict):
            return record
        plan = self.plan(record.schema, record.schema_id)
        if not plan:
            return record
        return _with_value(record, self._apply(plan, record.value))

    def mask_value(self, record: str, schema_id: int | None, value: Any) -> Any:
        plan = self.plan(record, schema_id)
        return self._apply(plan, value) if plan and value is not None else value

    def redact(self, data: bytes) -> dict[str, Any]:
        """A value no schema decoded (JSON, text, hex, a poison record): nothing in it can be told personal
        or not, so only its length and a pseudonym of its bytes are shown (equal values still compare)."""
        return {"redacted": True, "bytes": len(data), "digest": self.pseudonym("bytes", data)}

    def detail(self, text: str) -> str:
        """A dead letter's ``dlq.detail`` (an exception's message, which may quote the value that failed:
        ``ValueError('ann@example.com')``) cut before its first quote, bracket, ``=`` or ``:``, where the
        values of a message begin; the fixed words before (the error's kind) stay readable."""
        head = _DETAIL_VALUES.split(text, maxsplit=1)[0].rstrip()
        return text if head == text else f"{head} … (masked)"

    def _apply(self, plan: Plan, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(plan, str):
            return self.pseudonym(plan, value)
        if isinstance(value, dict):
            if VALUES in plan:  # a map: every value
                return {k: self._apply(plan[VALUES], v) for k, v in value.items()}
            out = value.copy()  # copy only along the masked paths: the rest is shared, not copied
            for step, below in plan.items():
                if step in out:
                    out[step] = self._apply(below, out[step])
            return out
        if isinstance(value, list) and ITEMS in plan:
            return [self._apply(plan[ITEMS], item) for item in value]
        return value


_DETAIL_VALUES = re.compile(r"""['"(\[{=:]""")
_FIELDS = tuple(f.name for f in dataclasses.fields(TapRecord))
_VALUE = _FIELDS.index("value")
_all_fields = attrgetter(*_FIELDS)


def _with_value(record: TapRecord, value: Any) -> TapRecord:
    """``dataclasses.replace(record, value=value)`` at a third of its cost (it is per record here)."""
    fields = list(_all_fields(record))
    fields[_VALUE] = value
    return TapRecord(*fields)


def _canonical(value: Any) -> str:
    """A stable text of a non-string value (a number, a whole record), so equal values pseudonymise alike."""
    if isinstance(value, bytes):
        return value.hex()
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _as_fields(marks_by_record: Mapping[str, Mapping[Path, str]]) -> list[PersonalField]:
    return [PersonalField(record, _dotted(path), kind)
            for record, marks in sorted(marks_by_record.items()) for path, kind in marks.items()]


def _dotted(path: Path) -> str:
    """``lines[].sku``, ``params{}``: how a path reads in listings and docs."""
    return "".join(step if step in (ITEMS, VALUES) or i == 0 else f".{step}" for i, step in enumerate(path))


def personal_fields(schemas: Mapping[str, Mapping[str, Any]] | None = None) -> list[PersonalField]:
    """Every field marked personal in ``schemas`` (default: the working tree's); needs no secret."""
    return _as_fields({name: marks_of(schema, name) for name, schema in (schemas or all_schemas()).items()})


def personal_fields_table() -> Table:
    """The fields a tap masks, for ``shopflow tap --personal-fields`` and the closing note."""
    from rich.table import Table

    table = Table(title="Fields marked personal (masked in taps unless the caller may unmask)")
    for column in ("record", "field", "kind"):
        table.add_column(column)
    for field in personal_fields():
        table.add_row(field.record, field.path, field.kind)
    return table
