"""The overview: the stack's servers, the registered ShopFlow processes, alerts and headline numbers."""

from __future__ import annotations

import asyncio
import time

import pytest
from polling import eventually

from shopflow.console import servers as servers_module
from shopflow.console.pages import sparkline
from shopflow.console.prometheus import Prometheus
from shopflow.console.routers.overview import HEADLINES, overview
from shopflow.console.servers import ServerRow, ServerStatus
from shopflow.deploy.stack import all_servers
from shopflow.settings import Settings


@pytest.mark.integration
def test_the_overview_as_json_has_every_server_up_and_the_console_itself(ops_settings, ops_user_factory,
                                                                         ops_session):
    session = ops_session(ops_user_factory("ops"))

    def console_scraped() -> dict:
        view = session.client.get("/", headers={"Accept": "application/json"}).json()
        ops = [p for p in view["processes"] if p["instance"].endswith(f":{ops_settings.ops_port}")]
        assert ops and ops[0]["up"] is True, "Prometheus has not scraped the console yet"
        return view

    view = eventually(console_scraped, timeout_s=30)  # file_sd is re-read and scraped within seconds

    assert view["prometheus_error"] is None
    assert {s["name"]: s["state"] for s in view["servers"]} == {s.name: "up" for s in all_servers(ops_settings)}
    assert all(s["rss_mb"] > 0 and s["version"] for s in view["servers"])
    (ops,) = [p for p in view["processes"] if p["instance"].endswith(f":{ops_settings.ops_port}")]
    assert ops["job"] == "ops" and ops["rss_mb"] > 10
    assert set(view["headline"]) == set(HEADLINES)
    assert all({"name", "state", "severity", "summary", "action"} <= set(a) for a in view["alerts"])


@pytest.mark.integration
def test_the_page_shows_servers_and_processes_with_stable_test_ids(ops_user_factory, ops_session):
    html = ops_session(ops_user_factory("ops")).client.get("/").text
    for testid in ("headline", "servers", "processes", 'nav-groups"', 'data-server="kafka"'):
        assert testid in html


# -- without servers ------------------------------------------------------------------------------------


async def test_without_prometheus_the_page_says_so_and_still_lists_the_servers(tmp_path):
    # Given no Prometheus where the settings say (nothing listens on port 1)
    settings = Settings(home=tmp_path, prometheus_port=1)
    prometheus = Prometheus(settings)
    try:
        # When the overview is built
        view = await overview(settings, prometheus, ServerStatus(settings))
    finally:
        await prometheus.aclose()
    # Then it says why numbers are missing and what to do, and the servers are there (down: none runs here)
    assert view.prometheus_error is not None and "shopflow stack" in view.prometheus_error
    assert [s.name for s in view.servers] == [s.name for s in all_servers(settings)]
    assert view.alerts == [] and view.headline.orders_per_min is None


def test_a_sparkline_is_an_svg_line_with_gaps_where_values_are_missing():
    svg = str(sparkline([1.0, 2.0, None, 4.0, 3.0], width=40, height=10, label="lag <1h>"))
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    assert "lag &lt;1h&gt;" in svg and "<1h>" not in svg


@pytest.mark.parametrize("values", [[None] * 61, [None] * 60 + [3.0]])
def test_a_sparkline_with_less_than_two_values_says_there_is_no_history(values):
    shown = str(sparkline(values, label="lag"))

    assert "no history" in shown and "<svg" not in shown


@pytest.fixture
def server_readings(monkeypatch) -> list[float]:
    """How many times the stack's servers were read (one entry per reading)."""
    readings: list[float] = []

    def read(settings: Settings) -> list[ServerRow]:
        readings.append(time.time())
        return [ServerRow(name="kafka", version="3.9.1", port=9092, pid=1, state="up", rss_mb=1.0, note="")]

    monkeypatch.setattr(servers_module, "read_servers", read)
    return readings


async def test_pages_at_once_share_one_reading_of_the_servers(server_readings, tmp_path):
    status = ServerStatus(Settings(home=tmp_path), max_age_s=5)

    # When five pages ask at the same time, then again right after
    first = await asyncio.gather(*(status.read() for _ in range(5)))
    again = await status.read()

    # Then the servers were read once, and every page got that reading with its time
    assert len(server_readings) == 1
    assert {r.read_at for r in first} == {again.read_at} and again.rows[0].name == "kafka"


async def test_a_reading_older_than_its_max_age_is_read_again(server_readings, tmp_path):
    now = [1000.0]
    status = ServerStatus(Settings(home=tmp_path), max_age_s=5, clock=lambda: now[0])

    old = await status.read()
    now[0] += 4.9
    young = await status.read()
    now[0] += 0.2  # 5.1 s after the first reading
    new = await status.read()

    assert young is old

    assert len(server_readings) == 2 and new.read_at > old.read_at
