"""The event contracts: Avro schemas (.avsc), one per command and event, and the registry-framed codec.

A schema lives at ``schemas/<context>/<Record>.avsc`` with namespace ``shopflow.<context>``, so a
record's full name (``shopflow.orders.OrderPlaced``) says where its file is; its typed record class sits
beside it, in that folder's package (``shopflow.schemas.orders.OrderPlaced``, see ``schemas.records``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SCHEMAS_DIR = Path(__file__).resolve().parent


def schema_path(fullname: str) -> Path:
    _, context, name = fullname.split(".")
    return SCHEMAS_DIR / context / f"{name}.avsc"


@cache
def load_schema(fullname: str) -> dict:
    """The parsed JSON of a record's .avsc (the same dict object on every call, for codec caches)."""
    path = schema_path(fullname)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise KeyError(f"no schema for {fullname} (expected {path})") from None


def all_schemas() -> dict[str, dict]:
    """Every schema in the working tree, by full name."""
    out = {}
    for path in sorted(SCHEMAS_DIR.glob("*/*.avsc")):
        fullname = f"shopflow.{path.parent.name}.{path.stem}"
        out[fullname] = load_schema(fullname)
    return out
