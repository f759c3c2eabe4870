"""Every page of the console opens from its navigation bar in a real browser with no console error and
none of its assets failing, and a lagging group's partition leads to the tap at its committed offset.
The screenshots of the README come from here (and from the scenario tests beside it)."""

from __future__ import annotations

import pytest
from console_ui import ConsoleUI, off_loop

pytestmark = pytest.mark.integration

# Each area in the navigation bar's order, and the screenshot it leaves (None: a scenario test takes a better one).
AREAS = {"groups": "groups", "connect": None, "dead-letters": "dead-letters", "saga": "saga", "shop": None,
         "overview": None}


def test_every_page_opens_from_the_navigation_with_no_console_error(ops_user_factory, ui: ConsoleUI):
    user = off_loop(ops_user_factory, "ops")
    ui.sign_in(user.email, user.password)

    for area, screenshot in AREAS.items():
        link = ui.page.get_by_test_id(f"nav-{area}")
        with ui.page.expect_navigation(wait_until="load") as opened:
            link.click()
        assert opened.value is not None and opened.value.status == 200, (area, ui.page.inner_text("main"))
        assert ui.page.get_by_test_id(f"page-{area}").is_visible(), area
        assert link.get_attribute("aria-current") == "page", area
        if screenshot:
            ui.screenshot(screenshot)


def test_a_lagging_partition_links_to_the_tap_at_what_its_group_has_yet_to_read(lagging_dead_letters,
                                                                                 ops_user_factory, ui: ConsoleUI):
    # Given a group committed 15 records before the end of a dead-letter topic (a topic the console may tap)
    group, topic, base = lagging_dead_letters
    user = off_loop(ops_user_factory, "ops")
    ui.sign_in(user.email, user.password, f"/groups?group={group}")

    # Then the page shows it 15 behind, in records and in seconds
    row = ui.page.locator(f'[data-testid="group"][data-group="{group}"]')
    assert row.get_by_test_id("group-lag").inner_text() == "15"
    assert row.get_by_test_id("group-lag-s").inner_text() != "-"
    ui.screenshot("groups-one")

    # When its partition's link is followed
    with ui.page.expect_navigation(wait_until="load"):
        ui.page.get_by_test_id("tap-link").click()

    # Then the tap shows the 15 records the group has yet to process, from its committed offset (their
    # values are not Avro, so a masked tap shows them redacted; their keys stay readable)
    assert ui.page.get_by_test_id("page-tap").is_visible()
    records = ui.page.get_by_test_id("tap-record")
    offsets = [int(records.nth(i).get_attribute("data-offset") or -1) for i in range(records.count())]
    assert offsets == list(range(base + 5, base + 20))
    assert "k5" in records.first.inner_text() and "record 5" not in records.first.inner_text()
    ui.screenshot("tap")
