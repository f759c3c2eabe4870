"""The consumer-groups page in a real browser while the saga's workers are stopped with orders still coming:
the agents' group turns STALL while its killed members still hold their partitions and STOP once the broker
let them go, its lag in seconds growing, and back to OK once the workers are started again.

The statuses are the console's own judgement over its window (``settings.lag_window_s``, 20 s) when no
``shopflow monitor`` publishes them, so the page is reloaded until it says so (generous timeouts; the
backend's timing is tests/deploy/test_prometheus_live.py's)."""

from __future__ import annotations

import re
import threading
import uuid
from urllib.parse import urlparse

import pytest
from console_ui import ConsoleUI, off_loop
from playwright.sync_api import Page

from shopflow.streams.client import SagaClient
from shopflow.tables import APP_ID

pytestmark = pytest.mark.integration

UNITS_S = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}


def seconds(shown: str) -> float:
    """The page's duration back in seconds: "850 ms", "12.5 s", "3 min 20 s", "2 h 5 min"."""
    parts = re.findall(r"([\d.]+) (ms|s|min|h)\b", shown)
    assert parts, f"not a duration: {shown!r}"
    return sum(float(n) * UNITS_S[unit] for n, unit in parts)


def group_shown(*statuses: str):
    """A check of the agents' group row: in one of ``statuses``, behind in records and in seconds; its lag
    in seconds."""
    def check(page: Page) -> float:
        row = page.locator(f'[data-testid="group"][data-group="{APP_ID}"]')
        assert row.get_attribute("data-status") in statuses, row.get_attribute("data-status")
        assert int(row.get_by_test_id("group-lag").inner_text()) > 0
        lag_s = seconds(row.get_by_test_id("group-lag-s").inner_text())
        assert lag_s > 0
        return lag_s
    return check


def test_stopped_workers_turn_the_group_stall_then_stop_with_growing_seconds_then_back(
        stack, codec, worker_factory, saga_workers, suite_timeouts, ops_user_factory, ui: ConsoleUI):
    ports = [urlparse(url).port or 0 for url in saga_workers]
    client = SagaClient(stack, codec)
    run = uuid.uuid4().hex[:8]
    client.seed_stock({f"{run}-A": 100_000})
    user = off_loop(ops_user_factory, "ops")
    page_of_group = f"/groups?group={APP_ID}"
    ui.sign_in(user.email, user.password, page_of_group)
    flowing = threading.Event()

    def place_orders() -> None:  # orders keep coming while the workers are down
        n = 0
        while not flowing.wait(0.5):
            client.place(f"{run}-{n}", [(f"{run}-A", 1, 1000)])
            n += 1

    feeder = threading.Thread(target=place_orders, name="test-orders", daemon=True)
    try:
        # Given the saga's workers killed while orders keep coming
        for port in ports:
            worker_factory.kill(port)
        feeder.start()

        # Then the group is STALL while the killed members hold their partitions (the broker lets them go
        # after its session timeout, which may come before the console's window of 20 s is full: then
        # it goes straight to STOP), STOP once they are gone, and what it has yet to process grows older
        stuck_s = ui.reload_until(page_of_group, group_shown("STALL", "STOP"), 150, "the agents' group STALL")
        ui.reload_until(page_of_group, lambda page: group_shown("STOP")(page) > stuck_s, 180,
                        "the agents' group STOP, what it has to process older than before")
        ui.screenshot("groups-stop")
    finally:
        flowing.set()
        if feeder.is_alive():
            feeder.join(10)
        for port in ports:  # as the session started them: later tests rely on the suite's step timeouts
            worker_factory.start(port, **suite_timeouts)
        worker_factory.wait_ready(ports)
        client.close()

    # When the workers are back, the group catches up: OK
    def caught_up(page: Page) -> bool:
        row = page.locator(f'[data-testid="group"][data-group="{APP_ID}"]')
        assert row.get_attribute("data-status") == "OK", row.get_attribute("data-status")
        return True

    ui.reload_until(page_of_group, caught_up, 180, "the agents' group back to OK")
