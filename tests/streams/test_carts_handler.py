"""The carts agent's handler as a Given/When/Then table: Given a stored cart, When one command (or the expiry
scanner's CartExpired) arrives, Then the cart's items, status, times and the order it became.

Times are the commands' own (``occurred_at``), never the worker's clock: the edge reads its writes by them.
An open cart with items expires once idle; an empty or closed one never does. The edge enforces the cart's
bounds (MAX_ORDER_LINES skus, MAX_LINE_QUANTITY units a line) and refuses to check out an empty cart; the
agent applies what it is sent. Every row's When delivered again changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass, field, replace

import pytest
from handler_factories import (
    CART,
    IDLE_MS,
    T0,
    add_item,
    as_stored,
    cart,
    cart_expired,
    checkout,
    clear_cart,
    remove_item,
)

from shopflow.schemas.carts import CartExpired
from shopflow.streams.carts import CartRecord, due_expiries, handle_cart
from shopflow.streams.runtime import Result
from shopflow.tables.values import CartState, encode
from shopflow.topologies.orders import MAX_LINE_QUANTITY

T1 = T0 + 1_000  # when the When's command was sent
NOW = T0 + 5_000  # when the worker applies it (never stored)


@dataclass(frozen=True)
class Case:
    id: str
    given: CartState | None
    when: CartRecord
    items: Mapping[str, int] | None  # the stored cart's items after; None: nothing stored
    status: str = "OPEN"
    stored: Mapping[str, object] = field(default_factory=dict)  # other fields of the stored cart
    duplicate: bool = False


OPEN_SINCE_T1 = {"updated_ms": T1, "expires_ms": T1 + IDLE_MS}
NEVER_EXPIRES = {"updated_ms": T1, "expires_ms": None}

CASES = [
    # -- add / remove / clear ----------------------------------------------------------------------------
    Case("add to a cart never used", None, add_item("SKU-A", 2, T1), {"SKU-A": 2}, stored=OPEN_SINCE_T1),
    Case("add more of a sku", cart({"SKU-A": 2}), add_item("SKU-A", 3, T1), {"SKU-A": 5}, stored=OPEN_SINCE_T1),
    Case("add another sku", cart({"SKU-A": 2}), add_item("SKU-B", 1, T1), {"SKU-A": 2, "SKU-B": 1}),
    Case(f"add {MAX_LINE_QUANTITY} units, the most a line takes", None, add_item("SKU-A", MAX_LINE_QUANTITY, T1),
         {"SKU-A": MAX_LINE_QUANTITY}),
    Case("remove some units", cart({"SKU-A": 5}), remove_item("SKU-A", 2, T1), {"SKU-A": 3}, stored=OPEN_SINCE_T1),
    Case("remove every unit: the line goes, an empty cart never expires", cart({"SKU-A": 2}),
         remove_item("SKU-A", 2, T1), {}, stored=NEVER_EXPIRES),
    Case("remove more units than the line holds: the line goes, never below zero",
         cart({"SKU-A": 2, "SKU-B": 1}), remove_item("SKU-A", 5, T1), {"SKU-B": 1}),
    Case("remove the whole line", cart({"SKU-A": 2, "SKU-B": 1}), remove_item("SKU-A", None, T1), {"SKU-B": 1}),
    Case("remove a sku the cart does not hold: unchanged", cart({"SKU-A": 2}), remove_item("SKU-B", 1, T1),
         {"SKU-A": 2}, stored=OPEN_SINCE_T1),
    Case("clear", cart({"SKU-A": 2, "SKU-B": 1}), clear_cart(T1), {}, stored=NEVER_EXPIRES),
    Case("a command older than the cart's last change keeps the later time", cart({"SKU-A": 1}, updated_ms=T1 + 5),
         add_item("SKU-A", 1, T1), {"SKU-A": 2}, stored={"updated_ms": T1 + 5, "expires_ms": T1 + 5 + IDLE_MS}),
    # -- checkout ----------------------------------------------------------------------------------------
    Case("cart checkout: closed with the order it became", cart({"SKU-A": 2}), checkout("o-20", T1), {},
         "CHECKED_OUT", {"checked_out_order": "o-20", **NEVER_EXPIRES}),
    Case("checkout of an empty cart: closed too (the edge refuses it first, 409)", None, checkout("o-21", T1), {},
         "CHECKED_OUT", {"checked_out_order": "o-21"}),
    Case("a change after checkout opens a fresh cart", cart(status="CHECKED_OUT"), add_item("SKU-C", 1, T1),
         {"SKU-C": 1}, stored={"checked_out_order": None, **OPEN_SINCE_T1}),
    Case("a change after expiry opens a fresh cart", cart(status="EXPIRED"), add_item("SKU-C", 1, T1), {"SKU-C": 1}),
    # -- expiry (the scanner's CartExpired) --------------------------------------------------------------
    Case("cart expiry: idle past its time", cart({"SKU-A": 2}), cart_expired(T0 + IDLE_MS + 1), {}, "EXPIRED",
         {"expires_ms": None, "updated_ms": T0}),
    Case("cart expiry: idle exactly its time", cart({"SKU-A": 2}), cart_expired(T0 + IDLE_MS), {}, "EXPIRED"),
    Case("no expiry for a cart touched since the scan", cart({"SKU-A": 2}, updated_ms=T0 + 1),
         cart_expired(T0 + IDLE_MS), {"SKU-A": 2}, stored={"expires_ms": T0 + 1 + IDLE_MS}),
    Case("no expiry for a checked-out cart", cart(status="CHECKED_OUT"), cart_expired(T0 + IDLE_MS), {},
         "CHECKED_OUT"),
    Case("no expiry for a cart never used: nothing stored", None, cart_expired(T0 + IDLE_MS), None),
    # -- met before --------------------------------------------------------------------------------------
    Case("duplicate command: nothing changes",
         replace(cart({"SKU-A": 2}), processed=[add_item("SKU-A", 2, T1).event_id]), add_item("SKU-A", 2, T1), None,
         duplicate=True),
]


def run(case: Case) -> Result:
    return handle_cart(deepcopy(case.given), case.when, NOW, IDLE_MS)  # the handler changes what it is given


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_given_a_cart_when_a_command_arrives_then_its_items_status_and_times(case: Case) -> None:
    result = run(case)

    assert result.outputs == []  # the carts agent emits nothing: the edge places the order
    assert result.duplicate is case.duplicate
    if case.items is None:
        assert result.state is None
        return
    assert result.state is not None
    assert (result.state.items, result.state.status) == (case.items, case.status)
    for name, value in case.stored.items():
        assert getattr(result.state, name) == value, name
    assert result.state.seen(case.when.event_id)
    assert result.state.updated_ms != NOW  # the worker's clock is never the cart's time


@pytest.mark.parametrize("case", [c for c in CASES if c.items is not None], ids=lambda c: c.id)
def test_a_command_delivered_again_changes_nothing(case: Case) -> None:
    first = run(case)
    assert first.state is not None
    stored = as_stored(first.state)  # as the worker reads it back
    kept = encode(stored.to_dict())  # the bytes the table holds

    again = handle_cart(stored, case.when, NOW + 5, IDLE_MS)

    assert again.duplicate and again.state is None and again.outputs == []
    assert encode(stored.to_dict()) == kept


def test_a_fresh_cart_after_checkout_still_knows_the_commands_it_met() -> None:
    closed = handle_cart(None, checkout("o-20", T0), T0, IDLE_MS).state
    reopened = handle_cart(closed, add_item("SKU-C", 1, T1), NOW, IDLE_MS).state
    assert reopened is not None

    late_copy = handle_cart(reopened, checkout("o-20", T0), NOW, IDLE_MS)  # redelivered after the reopening

    assert late_copy.duplicate and reopened.status == "OPEN" and reopened.items == {"SKU-C": 1}


def test_the_expiry_scanner_finds_only_open_idle_carts_with_items() -> None:
    carts = {
        "idle": cart({"SKU-A": 1}, updated_ms=T0),
        "busy": cart({"SKU-A": 1}, updated_ms=T0 + 10),
        "empty": cart(updated_ms=T0),
        "closed": cart(status="CHECKED_OUT", updated_ms=T0),
    }
    stored = [(cart_id, c.to_dict()) for cart_id, c in carts.items()]

    due = due_expiries(stored, T0 + IDLE_MS, IDLE_MS)
    rescan = due_expiries(stored, T0 + IDLE_MS + 3, IDLE_MS)

    assert [(o.short, o.key) for o in due] == [("CartExpired", "idle")]
    assert [o.event_id for o in rescan] == [o.event_id for o in due]  # a rescan emits the same record
    expired = due[0].record
    assert isinstance(expired, CartExpired) and expired.idle_ms == IDLE_MS


def test_the_scanners_expiry_applies_to_the_cart_it_saw_and_not_to_one_touched_since() -> None:
    idle = cart({"SKU-A": 1}, updated_ms=T0)
    (due,) = due_expiries([(CART, idle.to_dict())], T0 + IDLE_MS, IDLE_MS)
    assert isinstance(due.record, CartExpired)
    touched = handle_cart(deepcopy(idle), add_item("SKU-A", 1, T0 + IDLE_MS - 1), T0 + IDLE_MS, IDLE_MS).state

    expired = handle_cart(idle, due.record, T0 + IDLE_MS, IDLE_MS).state
    kept = handle_cart(touched, due.record, T0 + IDLE_MS, IDLE_MS).state

    assert expired is not None and (expired.status, expired.items) == ("EXPIRED", {})
    assert kept is not None and (kept.status, kept.items) == ("OPEN", {"SKU-A": 2})
