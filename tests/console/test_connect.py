"""The Kafka Connect page: a connector's state as one word that never hides a failed task, its root cause,
and, on the real Connect, a connector made to fail shown FAILED with its cause, then fixed and restarted,
paused and resumed from the page, each action confirmed, CSRF-checked and audited."""

from __future__ import annotations

import asyncio

import pytest
from polling import eventually
from redrive_support import audit_rows

from shopflow.connectors.apply import ConnectorStatus

TRACE = ("org.apache.kafka.connect.errors.ConnectException: wrapped\n\tat A.run\n"
         "Caused by: org.postgresql.util.PSQLException: FATAL: password authentication failed\n\tat B.run")


def status(connector: dict, *tasks: dict) -> ConnectorStatus:
    return ConnectorStatus.of("c", {"connector": connector, "tasks": [{"id": i, **t} for i, t in enumerate(tasks)],
                                    "type": "source"})


@pytest.mark.parametrize(("connector", "tasks", "health"), [
    ({"state": "RUNNING"}, [{"state": "RUNNING"}], "RUNNING"),
    ({"state": "RUNNING"}, [{"state": "RUNNING"}, {"state": "FAILED", "trace": TRACE}], "FAILED"),  # kafbat #1534
    ({"state": "FAILED", "trace": TRACE}, [], "FAILED"),  # a connector-level failure, no task at all (#1318)
    ({"state": "RUNNING"}, [{"state": "RESTARTING"}], "RESTARTING"),  # provectus #4430
    ({"state": "PAUSED"}, [{"state": "PAUSED"}], "PAUSED"),
    ({"state": "RUNNING"}, [{"state": "SOMETHING_NEW"}], "SOMETHING_NEW"),  # shown as it comes
])
def test_a_connector_has_one_health_that_never_hides_a_failure(connector, tasks, health):
    assert status(connector, *tasks).health == health


def test_the_cause_is_the_connectors_own_root_cause_before_a_tasks():
    # Given a failed connector and a task failed with another cause
    s = status({"state": "FAILED", "trace": TRACE}, {"state": "FAILED", "trace": "x.Y: the task's own"})

    assert s.cause == "org.postgresql.util.PSQLException: FATAL: password authentication failed"
    assert s.failed_tasks == 1
    assert s.states == {"FAILED"}


# -- on the real Connect, through the console --------------------------------------------------------------

JSON = {"Accept": "application/json"}


def connector_view(session, name: str) -> dict:
    view = session.client.get("/connect", headers=JSON).json()
    [found] = [c for c in view["connectors"] if c["name"] == name]
    return found


def in_health(session, name: str, health: str):
    """The connector once it and every task are in ``health`` (the tasks follow the connector's state)."""
    def check() -> dict:
        found = connector_view(session, name)
        assert found["health"] == health and all(t["state"] == health for t in found["tasks"]), found
        return found

    return eventually(check, timeout_s=60, interval_s=0.5)


@pytest.mark.integration
def test_a_failed_connector_shows_its_cause_and_comes_back_after_the_fix_and_a_restart(
        stack, ops_settings, failing_connector, ops_user_factory, ops_session):
    import asyncpg

    name, publication = failing_connector
    session = ops_session(ops_user_factory("ops"))

    # Given a connector whose task failed: FAILED, though the connector itself runs, with the root cause
    failed = in_health(session, name, "FAILED")
    assert failed["connector"]["state"] == "RUNNING"
    assert "Publication autocreation is disabled" in failed["cause"]
    assert failed["tasks"][0]["trace"].startswith("org.apache.kafka.connect.errors.ConnectException")
    counted = session.client.get("/connect", params={"state": "FAILED", "format": "json"}).json()
    assert counted["failed_tasks"] >= 1 and name in [c["name"] for c in counted["connectors"]]
    assert all("FAILED" in {c["connector"]["state"], *(t["state"] for t in c["tasks"])}
               for c in counted["connectors"])
    page = session.client.get("/connect", params={"state": "FAILED"}).text
    assert f'data-connector="{name}" data-health="FAILED"' in page

    # When the cause is fixed, and restart is confirmed and posted
    async def create_publication() -> None:
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            await conn.execute(f'CREATE PUBLICATION "{publication}" FOR TABLE public.outbox')
        finally:
            await conn.close()

    asyncio.run(create_publication())
    confirm = session.client.get(f"/connect/{name}/restart").text
    assert 'data-testid="confirm-submit"' in confirm and "onlyFailed=true" in confirm
    refused = session.client.post(f"/connect/{name}/restart")  # no CSRF token
    assert refused.status_code == 403
    done = session.client.post(f"/connect/{name}/restart", headers=session.csrf)

    # Then it runs again, and the restart is in the audit log
    assert done.status_code == 303 and done.headers["location"].endswith(f"/connect?done=restart%3A{name}")
    in_health(session, name, "RUNNING")
    assert audit_rows(ops_settings, "connector.restart", f"connector:{name}")[0]["actor"] == session.user.email

    # And pause and resume act through Connect, each audited
    paused = session.client.post(f"/connect/{name}/pause", headers={**session.csrf, **JSON})
    assert paused.status_code == 200, paused.text
    in_health(session, name, "PAUSED")
    session.client.post(f"/connect/{name}/resume", headers=session.csrf)
    in_health(session, name, "RUNNING")
    assert len(audit_rows(ops_settings, "connector.pause", f"connector:{name}")) == 1
    assert len(audit_rows(ops_settings, "connector.resume", f"connector:{name}")) == 1


@pytest.mark.integration
def test_acting_needs_the_ops_act_permission_and_a_known_connector(ops_user_factory, ops_session):
    data = ops_session(ops_user_factory("data"))
    ops = ops_session(ops_user_factory("ops"))

    assert data.client.get("/connect", headers=JSON).status_code == 403
    assert data.client.post("/connect/catalog-outbox/pause", headers=data.csrf).status_code == 403
    missing = ops.client.post("/connect/no-such-connector/pause", headers={**ops.csrf, **JSON})
    assert missing.status_code == 404 and "no connector named no-such-connector" in missing.json()["detail"]
    bad = ops.client.get("/connect", params={"state": "BROKEN"}, headers=JSON)
    assert bad.status_code == 422 and "unknown state BROKEN" in bad.json()["detail"]
    assert ops.client.post("/connect/catalog-outbox/explode", headers=ops.csrf).status_code == 422


# -- Connect down: the page says so (FastAPI's TestClient, no server) ---------------------------------------

def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound, never listening, then closed: nothing answers there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_the_confirm_step_says_connect_is_unreachable_and_what_to_do(accept):
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from shopflow.access import Permission, Principal, Role
    from shopflow.console.auth import signed_in
    from shopflow.console.main import create_app
    from shopflow.console.resources import get_console
    from shopflow.settings import Settings

    # Given a console whose Connect is down (a port nothing listens on), and a signed-in ops user
    settings = Settings(host="127.0.0.1", connect_port=_closed_port())
    app = create_app(settings)
    app.dependency_overrides[get_console] = lambda: SimpleNamespace(settings=settings)
    app.dependency_overrides[signed_in] = lambda: Principal("u-1", "ops@example.com", frozenset({Role.OPS}),
                                                             frozenset({Permission.OPS_VIEW, Permission.OPS_ACT}))

    # When the confirm step of a restart is asked for (no lifespan: nothing else is opened)
    answer = TestClient(app).get("/connect/catalog-outbox/restart", headers={"Accept": accept})

    # Then a 502 saying Connect is unreachable and how to bring it up, not a 500
    assert answer.status_code == 502, answer.text
    assert "unreachable" in answer.text and "shopflow stack up" in answer.text
