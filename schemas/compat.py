"""BACKWARD compatibility of Avro schemas, checked before anything is registered.

A new schema is BACKWARD compatible with the old one when a reader using the new schema can read
every record written with the old one (Avro's schema resolution rules). ``check`` returns the
problems, each naming the field path that breaks, so ``shopflow schemas check`` can say exactly
what to change. The registry checks the same rule on its side; this module also works with no
registry, against the schemas at a git revision.
"""

from __future__ import annotations

# Avro's type promotions: what a reader of the key can read when the writer wrote one of the values.
PROMOTIONS = {
    "long": {"int"},
    "float": {"int", "long"},
    "double": {"int", "long", "float"},
    "string": {"bytes"},
    "bytes": {"string"},
}
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def check(new: dict | list | str, old: dict | list | str) -> list[str]:
    """Problems that stop ``new`` (reader) from reading data written with ``old`` (writer)."""
    problems: list[str] = []
    _resolve(new, old, _Names(new), _Names(old), _root_path(new), problems, set())
    return problems


class _Names:
    """Named types of one schema by full name, so references can be followed."""

    def __init__(self, schema: object) -> None:
        self.types: dict[str, dict] = {}
        self._collect(schema, None)

    def _collect(self, schema, namespace):
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                full = _fullname(schema, namespace)
                self.types[full] = schema
                namespace = full.rpartition(".")[0] or None
                for f in schema.get("fields", []):
                    self._collect(f["type"], namespace)
            elif kind == "array":
                self._collect(schema["items"], namespace)
            elif kind == "map":
                self._collect(schema["values"], namespace)
            elif isinstance(kind, (dict, list)):
                self._collect(kind, namespace)

    def deref(self, schema):
        if isinstance(schema, str) and schema not in PRIMITIVES:
            for full, named in self.types.items():
                if full == schema or full.rpartition(".")[2] == schema:
                    return named
        if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
            return schema["type"]
        if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
            return schema["type"]  # {"type": "string", "logicalType": ...} reads as its base type
        return schema


def _fullname(schema: dict, namespace: str | None) -> str:
    name = schema["name"]
    if "." in name:
        return name
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _root_path(schema) -> str:
    return schema.get("name", "") if isinstance(schema, dict) else ""


def _kind(schema) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return schema["type"]
    return schema


def _resolve(reader, writer, rn: _Names, wn: _Names, path: str, out: list[str], seen: set) -> None:
    reader, writer = rn.deref(reader), wn.deref(writer)
    rk, wk = _kind(reader), _kind(writer)

    if wk == "union":
        # Every branch the old schema could have written must be readable by the new one.
        for branch in writer:
            _resolve(reader, branch, rn, wn, path, out, seen)
        return
    if rk == "union":
        if not any(_readable(branch, writer, rn, wn) for branch in reader):
            out.append(f"{path}: the new union {_describe(reader)} cannot read the old type {_describe(writer)}")
        return
    if rk != wk:
        if rk in PROMOTIONS and wk in PROMOTIONS[rk]:
            return
        out.append(f"{path}: type changed from {_describe(writer)} to {_describe(reader)}")
        return
    if rk in ("record", "enum", "fixed") and _short(reader) != _short(writer) and _short(writer) not in {
        a.rpartition(".")[2] for a in reader.get("aliases", [])
    }:
        out.append(f"{path}: named type renamed from {_short(writer)} to {_short(reader)} without an alias")
        return
    if rk == "record":
        key = (id(reader), id(writer))
        if key in seen:  # recursive types
            return
        seen.add(key)
        old_fields = {f["name"]: f for f in writer["fields"]}
        for alias_field in writer["fields"]:
            for alias in alias_field.get("aliases", []):
                old_fields.setdefault(alias, alias_field)
        for field in reader["fields"]:
            old = old_fields.get(field["name"])
            if old is None:
                for alias in field.get("aliases", []):
                    old = old_fields.get(alias) or old
            if old is None:
                if "default" not in field:
                    out.append(
                        f"{path}.{field['name']}: new field without a default; old records do not have it "
                        "(give it a default, e.g. make it [\"null\", ...] with \"default\": null)"
                    )
                continue
            _resolve(field["type"], old["type"], rn, wn, f"{path}.{field['name']}", out, seen)
    elif rk == "enum":
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            out.append(f"{path}: enum symbols removed without an enum default: {', '.join(missing)}")
    elif rk == "array":
        _resolve(reader["items"], writer["items"], rn, wn, f"{path}[]", out, seen)
    elif rk == "map":
        _resolve(reader["values"], writer["values"], rn, wn, f"{path}{{}}", out, seen)
    elif rk == "fixed" and reader["size"] != writer["size"]:
        out.append(f"{path}: fixed size changed from {writer['size']} to {reader['size']}")


def _readable(reader, writer, rn: _Names, wn: _Names) -> bool:
    probe: list[str] = []
    _resolve(reader, writer, rn, wn, "", probe, set())
    return not probe


def _short(named: dict) -> str:
    return named["name"].rpartition(".")[2]


def _describe(schema) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(b) for b in schema) + "]"
    if isinstance(schema, dict):
        return str(schema.get("name", schema["type"]))
    return str(schema)
