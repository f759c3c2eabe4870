"""The consumer-groups page: a group made to lag shows its lag in records and seconds, its partition links
to the tap at the committed offset, and that tap shows what the group has yet to read."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from shopflow.console.prometheus import Sample, Series
from shopflow.console.routers.groups import HISTORY_S, HISTORY_STEP_S, _history, groups_view
from shopflow.db import connect
from shopflow.lag import GroupLag, LagReport, Member, PartitionLag, Status
from shopflow.schemas.users import Role as WireRole
from shopflow.schemas.users import UserRegistered
from shopflow.topologies.catalog import USERS


@pytest.mark.integration
def test_a_lagging_group_as_json_links_to_the_records_it_has_yet_to_read(lagging_group, ops_settings,
                                                                          ops_user_factory, ops_session):
    group, topic = lagging_group
    session = ops_session(ops_user_factory("ops"))

    view = session.client.get("/groups", params={"group": group, "format": "json"}).json()

    (g,) = view["groups"]
    assert (g["group"], g["lag"], g["state"]) == (group, 15, "EMPTY")
    (p,) = g["partitions"]
    assert (p["topic"], p["committed"], p["end"], p["lag"]) == (topic, 5, 20, 15)
    assert p["lag_s"] is not None and p["lag_s"] >= 0
    assert p["tap_url"] == f"/tap/{topic}?partition=0&offset=5"
    assert len(g["lag_s_history"]) == HISTORY_S // HISTORY_STEP_S + 1

    # a topic of the test's own is no catalog topic: the tap page refuses it as GET /v1/taps does
    refused = session.client.get(p["tap_url"] + "&format=json")
    assert refused.status_code == 404 and "no tappable topic" in refused.json()["error"]


@pytest.mark.integration
def test_the_tap_page_shows_a_catalog_topic_from_an_offset_masked_and_audits_as_every_tap(
        ops_settings, ops_user_factory, ops_session, producer, codec):
    # Given: three UserRegistered records on the users topic (no agent reads it)
    user_id = f"tap-{uuid.uuid4().hex[:12]}"
    for n in range(3):
        producer.produce(USERS.name, key=user_id.encode(), value=codec.encode(USERS, UserRegistered(
            event_id=str(uuid.uuid4()), user_id=user_id, email=f"ann{n}@example.test", display_name="Ann",
            role=WireRole.CUSTOMER, occurred_at=datetime.now(UTC))))
    producer.flush(10)
    session = ops_session(ops_user_factory("ops"))

    # When: an ops user opens the tap page filtered to them
    view = session.client.get(f"/tap/{USERS.name}", params={"where": f'key == "{user_id}"', "format": "json"}).json()

    # Then: masked records, and the audit row every tap writes
    assert [r["key"] for r in view["records"]] == [user_id] * 3
    assert all(r["value"]["email"].startswith("email:") for r in view["records"])
    assert asyncio.run(audited(ops_settings, session.user.email)) == [("tap.read", f"topic:{USERS.name}")]


@pytest.mark.integration
def test_the_tap_page_refuses_topics_outside_the_catalog(ops_user_factory, ops_session):
    ops = ops_session(ops_user_factory("ops"))
    assert ops.client.get("/tap/_schemas", params={"format": "json"}).status_code == 404
    assert ops.client.get("/tap/__consumer_offsets", params={"format": "json"}).status_code == 404


async def audited(settings, email: str) -> list[tuple[str, str]]:
    conn = await connect(settings)
    try:
        return [(r["action"], r["target"]) for r in await conn.fetch(
            "SELECT action, target FROM audit_log WHERE actor = $1 AND action <> 'ops.login' ORDER BY id", email)]
    finally:
        await conn.close()


@pytest.mark.integration
def test_the_page_lists_the_group_with_its_status_and_a_tap_link(lagging_group, ops_user_factory, ops_session):
    group, topic = lagging_group
    html = ops_session(ops_user_factory("ops")).client.get("/groups").text
    assert f'data-group="{group}"' in html
    assert f'href="/tap/{topic}?partition=0&amp;offset=5" data-testid="tap-link"' in html


# -- without servers ------------------------------------------------------------------------------------


class FakePrometheus:
    """Answers the status query with the monitor's windowed statuses, and no history."""

    def __init__(self, statuses: list[Sample]):
        self.statuses = statuses

    async def query(self, expr: str) -> list[Sample]:
        return self.statuses

    async def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        return []


def _report(status: Status) -> LagReport:
    member = Member("m-1", "worker-1", "/127.0.0.1")
    partitions = [PartitionLag("orders", 0, 10, 30, 30, 20, 12.5, False, status, member),
                  PartitionLag("orders", 1, 30, 30, 30, 0, 0.0, False, Status.OK, member)]
    return LagReport(1000.0, 20.0, True, [GroupLag("g", "STABLE", status, [member], partitions)])


async def _sample(report: LagReport) -> LagReport:
    return report


async def test_the_monitors_windowed_status_wins_over_the_consoles_own():
    # Given the monitor judged partition 0 STALL over its window, and the console's one sample says OK
    prometheus = FakePrometheus([Sample({"group": "g", "topic": "orders", "partition": "0", "status": "STALL"}, 1)])
    # When the page is built
    view = await groups_view(_sample(_report(Status.OK)), prometheus, 20.0)  # type: ignore[arg-type]
    # Then the partition and its group are STALL, judged by the monitor; the caught-up one by the console
    (g,) = view.groups
    assert g.status is Status.STALL
    assert [(p.status, p.judged_by) for p in g.partitions] == [(Status.STALL, "monitor"), (Status.OK, "console")]
    assert g.members[0].assignment == ["orders[0]", "orders[1]"]
    assert g.partitions[0].tap_url == "/tap/orders?partition=0&offset=10" and g.partitions[1].tap_url is None


def test_the_last_hour_has_a_point_a_minute_with_gaps_where_prometheus_had_none():
    end = 10_000.0
    series = [Series({"group": "g"}, [(end - 120, 3.0), (end, 5.0)])]
    history = _history(series, "g", end)
    assert len(history) == 61 and history[-1] == 5.0 and history[-3] == 3.0 and history[-2] is None
    assert _history(series, "other", end) == [None] * 61
