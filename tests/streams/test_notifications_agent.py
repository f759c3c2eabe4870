"""The notifications agent's rule: which events ask for which notifications, with ids that dedupe."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shopflow.schemas.inventory import LowStock
from shopflow.schemas.notifications import Channel
from shopflow.schemas.orders import CancelReason, OrderCancelled, OrderConfirmed, OrderPlaced
from shopflow.schemas.records import Money
from shopflow.schemas.users import Role, UserRegistered
from shopflow.streams.notifications import money_text, notices_of, requests_of

AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def confirmed(event_id: str | None = None) -> OrderConfirmed:
    return OrderConfirmed(event_id or str(uuid.uuid4()), "ord-1", "user-1", Money(5990, "EUR"), "pay-1", AT)


def test_an_order_confirmed_asks_for_one_notification_per_channel_to_its_customer():
    requests = requests_of(notices_of(confirmed()))
    assert [(r.user_id, r.channel, r.template) for r in requests] == [
        ("user-1", Channel.EMAIL, "order_confirmed"), ("user-1", Channel.PUSH, "order_confirmed"),
        ("user-1", Channel.SMS, "order_confirmed")]
    assert requests[0].params == {"order_id": "ord-1", "total": "59.90 EUR"}
    assert requests[0].order_id == "ord-1"


def test_the_same_event_again_asks_for_the_same_notifications():
    event_id = str(uuid.uuid4())
    first, again = requests_of(notices_of(confirmed(event_id))), requests_of(notices_of(confirmed(event_id)))
    assert [r.notification_id for r in first] == [r.notification_id for r in again]
    assert len({r.notification_id for r in first}) == 3  # one per channel
    assert all(r.event_id == r.notification_id and r.cause_event_id == event_id for r in first)
    other = requests_of(notices_of(confirmed()))
    assert not {r.notification_id for r in other} & {r.notification_id for r in first}


def test_a_cancellation_says_why_and_a_refund_says_how_much():
    cancelled = OrderCancelled(event_id=str(uuid.uuid4()), order_id="ord-2", user_id="u",
                               reason=CancelReason.OUT_OF_STOCK, occurred_at=AT)
    notice = notices_of(cancelled)
    assert (notice.template, notice.params["reason"]) == ("order_cancelled", "an item was out of stock")
    refunded = OrderCancelled(event_id=str(uuid.uuid4()), order_id="ord-2", user_id="u",
                              reason=CancelReason.BY_CUSTOMER, refunded=True, occurred_at=AT)
    notice = notices_of(refunded, refund_amount="12.00 EUR")
    assert (notice.template, notice.params) == ("order_refunded", {"order_id": "ord-2", "amount": "12.00 EUR"})


def test_a_new_user_is_welcomed_by_email_by_name_or_mailbox():
    registered = UserRegistered(event_id=str(uuid.uuid4()), user_id="u", email="ada@example.com", display_name=None,
                                role=Role.CUSTOMER, occurred_at=AT)
    notice = notices_of(registered)
    assert (notice.template, notice.channels, notice.params) == ("welcome", (Channel.EMAIL,), {"display_name": "ada"})


def test_low_stock_goes_to_every_admin():
    low = LowStock(event_id=str(uuid.uuid4()), sku="TEE-M", available=3, threshold=5, occurred_at=AT)
    requests = requests_of(notices_of(low, admins=["a1", "a2"]))
    assert [(r.user_id, r.channel) for r in requests] == [("a1", Channel.EMAIL), ("a2", Channel.EMAIL)]
    assert requests[0].params == {"sku": "TEE-M", "available": "3", "threshold": "5"}
    assert requests_of(notices_of(low, admins=[])) == []


def test_events_nobody_is_told_about_ask_for_nothing():
    placed = OrderPlaced(str(uuid.uuid4()), "ord-3", "u", (), Money(0, "EUR"), "tok", AT)
    assert notices_of(placed) is None


def test_money_is_written_with_its_currency():
    assert money_text(Money(1999, "USD")) == "19.99 USD"
    assert money_text(Money(5, "EUR")) == "0.05 EUR"
