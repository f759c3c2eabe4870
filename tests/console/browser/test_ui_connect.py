"""The Kafka Connect page in a real browser: a connector made to fail (tests/console/test_connect.py's
``failing_connector``) is found with the page's state filter, shown FAILED with its cause; once the
cause is fixed, the restart asked for on the page and confirmed brings it back to RUNNING."""

from __future__ import annotations

import asyncio

import pytest
from console_ui import ConsoleUI, off_loop
from playwright.sync_api import Page

from shopflow.settings import Settings

pytestmark = pytest.mark.integration


def create_publication(settings: Settings, publication: str) -> None:
    """The fix: the publication the connector's task waits for (it may not create it itself)."""
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(settings.postgres_dsn)
        try:
            await conn.execute(f'CREATE PUBLICATION "{publication}" FOR TABLE public.outbox')  # a test-made name
        finally:
            await conn.close()

    asyncio.run(create())


def test_a_failed_connector_shows_failed_with_its_cause_and_a_confirmed_restart_brings_it_back(
        stack, failing_connector, ops_user_factory, ui: ConsoleUI):
    name, publication = failing_connector
    user = off_loop(ops_user_factory, "ops")
    ui.sign_in(user.email, user.password, "/connect")
    connector = ui.page.locator(f'[data-testid="connector"][data-connector="{name}"]')

    # Given its task failed at start: the state filter set to FAILED on the page lists it, FAILED, with its cause
    ui.page.get_by_test_id("connect-filter").get_by_label("FAILED", exact=True).check()
    with ui.page.expect_navigation(wait_until="load"):
        ui.page.get_by_test_id("connect-filter").get_by_role("button").click()
    filtered = ui.page.url.removeprefix(ui.base_url)
    assert "state=FAILED" in filtered

    def failed(page: Page) -> str:
        assert connector.get_attribute("data-health") == "FAILED"
        return connector.get_by_test_id("connector-cause").inner_text()

    cause = ui.reload_until(filtered, failed, 60, f"{name} FAILED")
    assert "Publication autocreation is disabled" in cause
    assert int(ui.page.get_by_test_id("count-failed-tasks").inner_text()) >= 1
    connector.scroll_into_view_if_needed()
    ui.screenshot("connect-failed")

    # When the cause is fixed and a restart is asked for and confirmed
    off_loop(create_publication, stack, publication)
    with ui.page.expect_navigation(wait_until="load"):
        connector.get_by_test_id("action-restart").click()
    assert ui.page.get_by_test_id("confirm-health").inner_text() == "FAILED"
    with ui.page.expect_navigation(wait_until="load"):
        ui.page.get_by_test_id("confirm-submit").click()
    assert name in ui.page.get_by_test_id("connect-notice").inner_text()

    # Then it runs again, connector and task
    def running(page: Page) -> bool:
        assert connector.get_attribute("data-health") == "RUNNING"
        units = connector.get_by_test_id("connect-unit")
        assert [units.nth(i).get_attribute("data-state") for i in range(units.count())] == ["RUNNING", "RUNNING"]
        return True

    ui.reload_until("/connect", running, 60, f"{name} RUNNING again")
    ui.screenshot("connect")
