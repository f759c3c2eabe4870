"""The shop admin page in a real browser: orders the real saga confirmed, projected into the console's read
model (its throwaway schema), show as today's orders and top skus. The numbers themselves are
tests/console/test_shop.py's; here the page a shop admin opens shows them, with no console error."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest
from console_ui import ConsoleUI, off_loop
from ops_session import projecting
from playwright.sync_api import Page

from shopflow.schemas.codec import AvroCodec
from shopflow.settings import Settings
from shopflow.streams.client import SagaClient

pytestmark = pytest.mark.integration


@pytest.fixture
def order_projection(ops_settings: Settings, codec: AvroCodec) -> Iterator[None]:
    """The orders projection into the console's schema, from the orders topic's end, in a thread with its own
    event loop (the browser's sync API holds this one), until the test ends."""
    started, stop = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    async def project() -> None:
        async with projecting(ops_settings, codec):
            started.set()
            await asyncio.to_thread(stop.wait)

    def run() -> None:
        try:
            asyncio.run(project())
        except BaseException as exc:  # said by the fixture, not lost in the thread
            failed.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="test-order-projection", daemon=True)
    thread.start()
    assert started.wait(60) and not failed, f"the orders projection did not start: {failed}"
    yield
    stop.set()
    thread.join(60)
    assert not failed, f"the orders projection failed: {failed}"


def test_orders_the_saga_confirmed_show_on_the_shop_page(stack, codec, saga_workers, order_projection,
                                                         ops_user_factory, ui: ConsoleUI):
    # Given three orders of two skus confirmed by the real saga while the read model is fed
    run = uuid.uuid4().hex[:8]
    a, b = f"{run}-A", f"{run}-B"
    client = SagaClient(stack, codec)
    try:
        client.seed_stock({a: 100, b: 100})
        for n, lines in enumerate(([(a, 1, 1999)], [(a, 2, 1999), (b, 1, 500)], [(b, 3, 500)])):
            client.place(f"shop-{run}-{n}", lines)
    finally:
        client.close()
    user = off_loop(ops_user_factory, "ops")

    # When a shop admin opens the shop page
    ui.sign_in(user.email, user.password, "/shop")

    # Then both skus are among the top skus, with their units sold, and today counts the orders
    def top_skus(page: Page) -> dict[str, str]:
        rows = {sku: page.locator(f'[data-testid="top-sku"][data-sku="{sku}"]') for sku in (a, b)}
        assert all(row.count() == 1 for row in rows.values()), page.get_by_test_id("page-shop").inner_text()[:1500]
        return {sku: row.inner_text() for sku, row in rows.items()}

    shown = ui.reload_until("/shop", top_skus, 60, "the three orders in the read model")
    assert shown[a].split()[:2] == [a, "3"] and shown[b].split()[:2] == [b, "4"], shown
    assert int(ui.page.get_by_test_id("today-orders").inner_text().split()[-1]) >= 3
    ui.screenshot("shop")
