"""Notifications at the edge: my preferences and history, and an order confirmed through the edge that
reaches its customer as exactly one email (read back through the stack's mailpit), even when the
OrderConfirmed is delivered again."""

from __future__ import annotations

import asyncio

import pytest
from notifications_pipeline import start_agent, start_sender
from polling import eventually, eventually_async

from shopflow.deploy.mail_server import Mailbox
from shopflow.schemas.notifications import Channel
from shopflow.schemas.orders import OrderConfirmed
from shopflow.streams.notifier import Told
from shopflow.topologies.catalog import ORDERS

pytestmark = pytest.mark.integration


async def test_preferences_start_all_on_and_are_replaced_by_put(client, new_account):
    me = await new_account()
    r = await client.get("/v1/users/me/notification-preferences", headers=me.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"channels": {"EMAIL": True, "SMS": True, "PUSH": True}, "quiet_hours": None}

    chosen = {"channels": {"SMS": False}, "quiet_hours": {"start_hour": 22, "end_hour": 7, "time_zone": "Europe/Paris"}}
    r = await client.put("/v1/users/me/notification-preferences", headers=me.auth, json=chosen)
    assert r.status_code == 200, r.text
    got = (await client.get("/v1/users/me/notification-preferences", headers=me.auth)).json()
    assert got == {"channels": {"EMAIL": True, "SMS": False, "PUSH": True},
                   "quiet_hours": {"start_hour": 22, "end_hour": 7, "time_zone": "Europe/Paris"}}


@pytest.mark.parametrize(("body", "says"), [
    ({"channels": {}, "quiet_hours": {"start_hour": 22, "end_hour": 7, "time_zone": "Mars/Olympus"}},
     "unknown time zone"),
    ({"channels": {}, "quiet_hours": {"start_hour": 7, "end_hour": 7}}, "same hour"),
    ({"channels": {"FAX": True}}, "FAX"),
    ({"channels": {}, "quiet_hours": {"start_hour": 25, "end_hour": 7}}, "less than or equal to 23"),
])
async def test_bad_preferences_are_refused_with_why(client, new_account, body, says):
    me = await new_account()
    r = await client.put("/v1/users/me/notification-preferences", headers=me.auth, json=body)
    assert r.status_code == 422 and says in r.text


async def test_preferences_and_history_need_a_signed_in_user(client):
    for path in ("/v1/users/me/notification-preferences", "/v1/users/me/notifications"):
        assert (await client.get(path)).status_code == 401


async def test_an_order_confirmed_through_the_edge_delivers_exactly_one_email(
        client, new_account, skus, idem, api_settings, saga_workers, topic_factory, producer, topic_reader, codec):
    requests_topic, retry_topic = topic_factory("notifications", 3), topic_factory("notifications-retry", 3)
    redelivered = topic_factory("orders-again", 1)
    agent = start_agent(api_settings, topics=[ORDERS.name, redelivered], output_topic=requests_topic, from_end=True)
    sender = start_sender(api_settings, topic=requests_topic, retry_topic=retry_topic)
    try:
        eventually(lambda: "assigned" in agent.verdicts, timeout_s=30, give_up=agent.failure)
        admin, me = await new_account("admin"), await new_account()
        r = await client.post(f"/v1/admin/stock/{skus['C']}/adjust", headers={**admin.auth, **idem()},
                              json={"delta": 5, "reason": "goods received"})
        assert r.status_code == 202, r.text
        orders_mark = topic_reader.mark(ORDERS)
        r = await client.post("/v1/orders", headers={**me.auth, **idem()},
                              json={"lines": [{"sku": skus["C"], "quantity": 1}], "payment_token": "tok_approve"})
        assert r.status_code == 202, r.text
        order_id = r.json()["order_id"]

        with Mailbox(api_settings) as mailbox:
            mails = await eventually_async(lambda: asyncio.to_thread(mailbox.to, me.email), timeout_s=60,
                                           give_up=lambda: agent.failure() or sender.failure(),
                                           what=f"the confirmation of {order_id} in {me.email}'s mailbox")
            assert len(mails) == 1
            assert mails[0].subject == f"Your order {order_id} is confirmed"
            assert "we charged 120.00 EUR" in mails[0].text and f"<strong>{order_id}</strong>" in mails[0].html

            # The same OrderConfirmed once more (a redelivery): asked again, sent nothing.
            def is_confirmation(m) -> bool:
                return m.key() == order_id.encode() and isinstance(codec.decode_record(m.value()), OrderConfirmed)

            confirmed = [m for m in topic_reader.since(ORDERS, orders_mark, until=lambda ms: any(
                is_confirmation(m) for m in ms)) if is_confirmation(m)]
            seen = len(sender.verdicts)
            producer.produce(redelivered, key=confirmed[0].key(), value=confirmed[0].value())
            producer.flush(10)
            # The sender answers a request only after its channel was called (or the ledger said it was done
            # already): once the redelivered e-mail request is answered, a second e-mail would be in the box.
            eventually(lambda: len(sender.verdicts) >= seen + 3 and len(email_verdicts(sender, order_id)) == 2,
                       timeout_s=30, give_up=sender.failure)
            assert len(mailbox.to(me.email)) == 1

        emails = email_verdicts(sender, order_id)
        assert len(emails) == 2 and all(isinstance(v, Told) and v.sent.delivered for v in emails)
        assert emails[0].sent.event_id == emails[1].sent.event_id

        history = await client.get("/v1/users/me/notifications", headers=me.auth)
        assert history.status_code == 200, history.text
        by_channel = {i["channel"]: i for i in history.json()["items"] if i["order_id"] == order_id}
        assert by_channel["EMAIL"]["status"] == "delivered" and by_channel["EMAIL"]["attempts"] == 1
        assert by_channel["EMAIL"]["subject"] == f"Your order {order_id} is confirmed"
        assert by_channel["SMS"]["status"] == "skipped"  # no phone numbers on accounts
    finally:
        agent.close()
        sender.close()



def email_verdicts(sender, order_id: str) -> list:
    return [v for req, v in sender.verdicts if req.channel == Channel.EMAIL and req.order_id == order_id]


async def test_a_low_stock_crossing_tells_each_admin_once(
        client, new_account, skus, idem, api_settings, saga_workers, topic_factory, topic_reader, codec):
    from shopflow.schemas.inventory import LowStock
    from shopflow.topologies.catalog import INVENTORY_EVENTS

    sku = skus["USD1"]  # no other test holds stock of it
    requests_topic, retry_topic = topic_factory("notifications", 3), topic_factory("notifications-retry", 3)
    agent = start_agent(api_settings, topics=[INVENTORY_EVENTS.name], output_topic=requests_topic, from_end=True)
    sender = start_sender(api_settings, topic=requests_topic, retry_topic=retry_topic)
    try:
        eventually(lambda: "assigned" in agent.verdicts, timeout_s=30, give_up=agent.failure)
        admin, buyer = await new_account("admin"), await new_account()
        r = await client.put(f"/v1/admin/stock/{sku}/low-stock-threshold", headers=admin.auth, json={"threshold": 6})
        assert r.status_code == 202, r.text
        assert (await client.put(f"/v1/admin/stock/{sku}/low-stock-threshold", headers=buyer.auth,
                                 json={"threshold": 6})).status_code == 403
        inventory_mark, orders_mark = topic_reader.mark(INVENTORY_EVENTS), topic_reader.mark(ORDERS)
        r = await client.post(f"/v1/admin/stock/{sku}/adjust", headers={**admin.auth, **idem()},
                              json={"delta": 8, "reason": "goods received"})  # 8 available: above 6
        assert r.status_code == 202, r.text
        order_ids = []
        for quantity in (3, 1):  # 5 left: crossed; 4 left: still below, told already
            r = await client.post("/v1/orders", headers={**buyer.auth, **idem()},
                                  json={"lines": [{"sku": sku, "quantity": quantity}], "payment_token": "tok_approve"})
            assert r.status_code == 202, r.text
            order_ids.append(r.json()["order_id"])

        with Mailbox(api_settings) as mailbox:
            mails = await eventually_async(lambda: asyncio.to_thread(mailbox.to, admin.email), timeout_s=60,
                                           give_up=lambda: agent.failure() or sender.failure(),
                                           what=f"the low-stock alert in {admin.email}'s mailbox")
            assert [m.subject for m in mails] == [f"Low stock: {sku} (5 left)"]
            assert "threshold 6" in mails[0].text

            # Once both orders are confirmed, the inventory has reserved both (a reservation comes before a
            # confirmation): the second left no LowStock behind it, so nothing more can come of it.
            def confirmed(ms) -> set[str]:
                return {m.key().decode() for m in ms if isinstance(codec.decode_record(m.value()), OrderConfirmed)}

            topic_reader.since(ORDERS, orders_mark, until=lambda ms: set(order_ids) <= confirmed(ms), timeout_s=60)
            alerts = [record for m in topic_reader.since(INVENTORY_EVENTS, inventory_mark)
                      if isinstance(record := codec.decode_record(m.value()), LowStock) and record.sku == sku]
            assert [(a.available, a.threshold) for a in alerts] == [(5, 6)]
            assert len(mailbox.to(admin.email)) == 1
            assert mailbox.to(buyer.email) == []
    finally:
        agent.close()
        sender.close()
