"""Dead letters in a real browser, with the saga's real agents: a poison record (a CancelOrder that reached
the orders agent before its order) is found on the page with its reason and origin; once the cause is
fixed (the order placed and confirmed), it is redriven from the page, confirmed, and the agent processes
it (the order is refunded); the page marks it redriven and offers no second redrive.

The HTTP-level cases (counts, dry run, CSRF, once only, filters) are tests/console/test_dead_letters.py's."""

from __future__ import annotations

import uuid

import pytest
from console_ui import ConsoleUI, off_loop
from playwright.sync_api import Locator, Page
from polling import eventually

from shopflow.streams.client import SagaClient, TopicReader

pytestmark = pytest.mark.integration

DLQ = "order-commands.dlq"


class OrderEvents:
    """The orders topic from now on: an order's events by record name."""

    def __init__(self, reader: TopicReader, order_id: str):
        self.reader, self.order_id, self.seen = reader, order_id, []

    def first(self, record: str) -> dict:
        self.seen.extend((r, v) for _, r, v, _ in self.reader.poll(0.5) if v.get("order_id") == self.order_id)
        found = [v for r, v in self.seen if r == record]
        assert found, f"no {record} for {self.order_id} yet; seen {[r for r, _ in self.seen]}"
        return found[0]


def test_a_poison_record_is_shown_then_redriven_from_the_page_once_fixed_and_processed(
        stack, codec, saga_workers, ops_user_factory, ui: ConsoleUI):
    run = uuid.uuid4().hex[:8]
    order_id, sku = f"{run}-o1", f"{run}-SKU"
    client = SagaClient(stack, codec)
    orders = TopicReader(stack, codec, ["orders"], from_end=True)
    events = OrderEvents(orders, order_id)
    user = off_loop(ops_user_factory, "ops")
    try:
        # Given a CancelOrder for an order never placed: the orders agent dead-letters it
        client.cancel(order_id)
        client.flush()

        # Then the dead-letters page lists the topic, and the topic's page, filtered to the order, shows it
        ui.sign_in(user.email, user.password, "/dead-letters")
        with ui.page.expect_navigation(wait_until="load"):
            ui.page.locator(f'[data-testid="dead-letter-topic"][data-topic="{DLQ}"] a').click()
        ui.page.get_by_test_id("where").fill(f'value.order_id == "{order_id}"')
        with ui.page.expect_navigation(wait_until="load"):
            ui.page.get_by_test_id("dead-letters-filter").get_by_role("button", name="Show").click()
        filtered = ui.page.url.removeprefix(ui.base_url)

        def shown(page: Page) -> Locator:
            letters = page.get_by_test_id("dead-letter")
            assert letters.count() == 1, page.get_by_test_id("dead-letters-summary").inner_text()
            return letters.first

        letter = ui.reload_until(filtered, shown, 60, f"the CancelOrder of {order_id} dead-lettered")
        assert letter.get_by_test_id("reason").inner_text() == "unexpected-record"
        assert "never placed" in letter.inner_text()
        assert letter.get_by_test_id("origin").inner_text().startswith("order-commands/")
        assert letter.get_attribute("data-redriven") == "no"
        ui.screenshot("dead-letters-topic")

        # When the cause is fixed (the order is placed and confirmed), and the redrive asked for and confirmed
        client.seed_stock({sku: 5})
        client.place(order_id, [(sku, 1, 1500)])
        client.flush()
        eventually(lambda: events.first("OrderConfirmed"), timeout_s=60, interval_s=0, what="the order confirmed")
        with ui.page.expect_navigation(wait_until="load"):
            letter.get_by_test_id("redrive-one").click()
        assert ui.page.get_by_test_id("redrive-outcome").get_attribute("data-outcome") == "would-send"
        ui.screenshot("dead-letters-redrive")
        with ui.page.expect_navigation(wait_until="load"):
            ui.page.get_by_test_id("redrive-submit").click()
        assert ui.page.get_by_test_id("redrive-result").inner_text().startswith("1 of 1 sent")

        # Then the agent processes it as any cancel after payment: the order is refunded
        cancelled = eventually(lambda: events.first("OrderCancelled"), timeout_s=60, interval_s=0,
                               what="the redriven cancel processed")
        assert cancelled["refunded"] is True

        # And the page marks it redriven, with no second redrive offered
        ui.goto(filtered)
        redriven = shown(ui.page)
        assert redriven.get_attribute("data-redriven") == "done"
        assert user.email in redriven.get_by_test_id("redriven").inner_text()
        assert redriven.get_by_test_id("redrive-one").count() == 0
    finally:
        orders.close()
        client.close()
