"""Cart converters and the read-your-writes rule, without servers."""

from __future__ import annotations

from datetime import UTC, datetime

from shopflow.api.cart_converters import cart_public, now_ms_time, to_add_cart_item, to_remove_cart_item
from shopflow.api.cart_schemas import CartStatus
from shopflow.api.carts_store import Mark, reached
from shopflow.catalog.reader import Price
from shopflow.schemas import load_schema
from shopflow.schemas.records import ms_of
from shopflow.tables.values import PROCESSED_KEPT

WHEN = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)

EUR_100 = Price(100, "EUR", True)


def test_times_are_whole_milliseconds_as_avro_keeps_them():
    assert ms_of(WHEN) == 1740830400123
    assert now_ms_time().microsecond % 1000 == 0


def test_commands_carry_the_user_as_cart_and_round_trip():
    add = to_add_cart_item(user_id="u-1", sku="A", quantity=2, occurred_at=WHEN)
    assert (add.cart_id, add.user_id, add.sku, add.quantity) == ("u-1", "u-1", "A", 2)
    remove = to_remove_cart_item(user_id="u-1", sku="A", quantity=None, occurred_at=WHEN, event_id=add.event_id)
    assert type(remove).from_avro(remove.to_avro()) == remove
    assert {f["name"] for f in load_schema(remove.AVRO_NAME)["fields"]} == set(remove.to_avro())


def test_cart_public_prices_lines_and_totals_one_currency():
    view = {"cart_id": "u-1", "user_id": "u-1", "items": {"B": 1, "A": 2}, "updated_ms": ms_of(WHEN),
            "status": "OPEN", "checked_out_order": None}
    cart = cart_public(user_id="u-1", view=view, prices={"A": EUR_100, "B": Price(50, "EUR", True)}, up_to_date=True)
    assert [(line.sku, line.quantity) for line in cart.items] == [("A", 2), ("B", 1)]
    assert (cart.subtotal.amount_minor, cart.subtotal.currency, cart.updated_at) == (250, "EUR", WHEN)
    mixed = cart_public(user_id="u-1", view=view, prices={"A": EUR_100, "B": Price(50, "USD", True)}, up_to_date=True)
    assert mixed.subtotal is None
    gone = cart_public(user_id="u-1", view=view, prices={"A": EUR_100}, up_to_date=False)
    assert gone.items[1].unit_price is None and gone.subtotal is None and not gone.up_to_date
    never = cart_public(user_id="u-2", view=None, prices={}, up_to_date=True)
    assert (never.status, never.items, never.updated_at) == (CartStatus.OPEN, [], None)


def test_reached_means_the_command_was_applied():
    mark = Mark(1000, "e-2")
    assert reached(None, Mark())
    assert not reached(None, mark)
    # The agent's own clock may put updated_ms past a command still queued: the event id decides.
    assert not reached({"updated_ms": 5000, "processed": ["e-1"]}, mark)
    assert reached({"updated_ms": 900, "processed": ["e-1", "e-2"]}, mark)
    # Without ids, or once the id may have aged out, the time is the rule.
    assert reached({"updated_ms": 1000}, mark) and not reached({"updated_ms": 999}, mark)
    full = [f"x-{i}" for i in range(PROCESSED_KEPT)]
    assert reached({"updated_ms": 1000, "processed": full}, mark)
