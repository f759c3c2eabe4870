"""Saga health in a real browser: a stuck order (its payment never answers) appears with its path through the
topics, and an order confirmed by the real saga is found with the page's search box and told in order.
Stuck orders come from a monitor over stand-in topics (tests/console/conftest.py's
``running_monitor``), which publishes them where the console's process reads them (Redis)."""

from __future__ import annotations

import uuid

import pytest
from console_ui import ConsoleUI, off_loop
from playwright.sync_api import Locator, Page

from shopflow.schemas.orders import OrderPlaced
from shopflow.schemas.payments import PaymentRequested
from shopflow.schemas.records import Money, OrderLine, datetime_of_ms
from shopflow.streams.client import SagaClient, now_ms
from shopflow.topologies.catalog import ORDERS, PAYMENT_REQUESTS, PAYMENT_RESULTS

pytestmark = pytest.mark.integration


def test_an_order_whose_payment_never_answers_appears_as_stuck_with_its_path(
        topic_factory, producer, codec, running_monitor, ops_user_factory, ui: ConsoleUI):
    # Given stand-ins for the saga's topics with no payments agent on them, watched by a monitor
    stand_in = {t.name: topic_factory(t.name, partitions=2) for t in (ORDERS, PAYMENT_REQUESTS, PAYMENT_RESULTS)}
    running_monitor(list(stand_in.values()))
    order_id, total = f"stuck-{uuid.uuid4().hex[:10]}", Money(1999, "EUR")
    user = off_loop(ops_user_factory, "ops")

    # When an order is placed and its payment requested, and nothing answers
    placed = OrderPlaced(str(uuid.uuid4()), order_id, "u-1", (OrderLine("SKU-A", 1, total),), total, "tok_approve",
                         datetime_of_ms(now_ms()))
    requested = PaymentRequested(str(uuid.uuid4()), order_id, "u-1", total, "tok_approve", datetime_of_ms(now_ms()))
    for topic, record in ((ORDERS, placed), (PAYMENT_REQUESTS, requested)):
        producer.produce(stand_in[topic.name], key=order_id.encode(), value=codec.encode(topic, record))
    producer.flush(10)

    # Then the saga page lists it past its deadline, with the records it went through and what it waits for
    ui.sign_in(user.email, user.password, "/saga")

    def listed(page: Page) -> Locator:
        row = page.locator(f'[data-testid="stuck-order"][data-order="{order_id}"]')
        assert row.count() == 1, page.get_by_test_id("page-saga").inner_text()[:2000]
        return row

    stuck = ui.reload_until("/saga", listed, 60, f"{order_id} listed as stuck")
    assert stuck.get_attribute("data-state") == "RESERVED"
    path = stuck.get_by_test_id("stuck-path").inner_text()
    assert path.index(f"{stand_in[ORDERS.name]}: OrderPlaced") < path.index(
        f"{stand_in[PAYMENT_REQUESTS.name]}: PaymentRequested"), path
    assert "PaymentSucceeded" in stuck.inner_text()  # what it waits for
    stuck.scroll_into_view_if_needed()
    ui.screenshot("saga-stuck")


def test_an_order_is_found_with_the_search_box_and_its_story_told_in_order(stack, codec, saga_workers,
                                                                             ops_user_factory, ui: ConsoleUI):
    # Given an order confirmed by the real saga
    run = uuid.uuid4().hex[:8]
    order_id = f"story-{run}"
    client = SagaClient(stack, codec)
    try:
        client.seed_stock({f"{run}-A": 10})
        client.place(order_id, [(f"{run}-A", 2, 1000)])
    finally:
        client.close()
    user = off_loop(ops_user_factory, "ops")

    # When it is looked for with the saga page's search box
    ui.sign_in(user.email, user.password, "/saga")
    ui.page.get_by_test_id("order-id").fill(order_id)
    with ui.page.expect_navigation(wait_until="load"):
        ui.page.get_by_test_id("order-search-submit").click()
    assert ui.page.url == ui.url(f"/saga/orders/{order_id}")

    # Then its story lists every record it caused, from the command to the stock committed, in time order
    def told(page: Page) -> list[str]:
        rows = page.get_by_test_id("story-record")
        records = [rows.nth(i).get_attribute("data-record") or "" for i in range(rows.count())]
        assert "CommitStock" in records, records
        return records

    records = ui.reload_until(f"/saga/orders/{order_id}?since=15m", told, 60, f"the story of {order_id}")
    steps = ["PlaceOrder", "OrderPlaced", "ReserveStock", "StockReserved", "PaymentRequested", "PaymentSucceeded",
             "OrderConfirmed", "CommitStock"]
    assert sorted(records) == sorted(steps)
    assert [records.index(s) for s in steps] == sorted(records.index(s) for s in steps), records
    ui.screenshot("order-story")
