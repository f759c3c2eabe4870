"""BACKWARD compatibility rules, as a table: given an old and a new schema, then these problems."""

from __future__ import annotations

import copy

import pytest

from shopflow.schemas import load_schema
from shopflow.schemas.compat import check

BASE = {
    "type": "record", "name": "Order", "namespace": "shopflow.test", "doc": "t",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["PENDING", "CONFIRMED"]}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def _with(change) -> dict:
    schema = copy.deepcopy(BASE)
    change(schema["fields"])
    return schema


CASES = [
    # (id, new schema made from BASE, expected problem fragment or None)
    ("unchanged", BASE, None),
    ("optional field added", _with(lambda f: f.append({"name": "x", "type": ["null", "long"], "default": None})), None),
    ("required field added", _with(lambda f: f.append({"name": "currency", "type": "string"})),
     "Order.currency: new field without a default"),
    ("field removed", _with(lambda f: f.pop(1)), None),
    ("int promoted to long", _with(lambda f: f[1].update(type="long")), None),
    ("long narrowed to int", None, "type changed from long to int"),
    ("enum symbol added", _with(lambda f: f[2]["type"]["symbols"].append("CANCELLED")), None),
    ("enum symbol removed", _with(lambda f: f[2]["type"].update(symbols=["PENDING"])),
     "Order.state: enum symbols removed without an enum default: CONFIRMED"),
    ("optional made required", _with(lambda f: f[3].update(type="string")),
     "Order.note: type changed from null to string"),
    ("string to int", _with(lambda f: f[0].update(type="int")), "Order.order_id: type changed from string to int"),
    ("renamed with alias", _with(lambda f: f[0].update(name="id", aliases=["order_id"])), None),
    ("renamed without alias", _with(lambda f: f[0].update(name="id")), "Order.id: new field without a default"),
]


@pytest.mark.parametrize("case_id,new,expected", CASES, ids=[c[0] for c in CASES])
def test_backward_rule(case_id, new, expected):
    old = BASE
    if new is None:  # narrowing: the old schema had the wider type
        old, new = _with(lambda f: f[1].update(type="long")), BASE

    problems = check(new, old)

    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


def test_nested_shared_types_are_checked_by_path():
    old = load_schema("shopflow.orders.OrderPlaced")
    new = copy.deepcopy(old)
    money = new["fields"][3]["type"]["items"]["fields"][2]["type"]  # lines[].unit_price: Money
    money["fields"].append({"name": "rate", "type": "double"})

    assert check(new, old) == [
        'OrderPlaced.lines[].unit_price.rate: new field without a default; old records do not have it '
        '(give it a default, e.g. make it ["null", ...] with "default": null)'
    ]
