"""GET /v1/taps/{topic} on the real stack: who may tap, NDJSON and SSE, masking, limits, the audit log."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from polling import eventually_async

from shopflow.schemas.users import Role as WireRole
from shopflow.schemas.users import UserRegistered
from shopflow.topologies.catalog import USERS

pytestmark = pytest.mark.integration

TOPIC = USERS.name  # no agent reads it: records produced here disturb nothing


@pytest.fixture(scope="module")
async def accounts(new_account):
    return {"customer": await new_account(), "data": await new_account("data"), "admin": await new_account("admin")}


@pytest.fixture(scope="module")
def registered(codec, stack):
    """Three UserRegistered records of one fresh user id on the users topic, and a time just before them."""
    from confluent_kafka import Producer

    user_id, since_ms = f"tap-{uuid.uuid4().hex[:12]}", int(time.time() * 1000) - 1000
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers, "acks": "all"})
    for n in range(3):
        record = UserRegistered(event_id=str(uuid.uuid4()), user_id=user_id, email=f"ann{n}@example.test",
                                display_name="Ann", role=WireRole.CUSTOMER, occurred_at=datetime.now(UTC))
        producer.produce(TOPIC, key=user_id.encode(), value=codec.encode(USERS, record))
    assert producer.flush(10) == 0
    return user_id, since_ms


def _params(registered, **extra) -> dict[str, object]:
    user_id, since_ms = registered
    return {"at": str(since_ms), "where": f'key == "{user_id}"', **extra}


def _ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


async def test_anonymous_is_401_and_a_customer_403(client, accounts):
    assert (await client.get(f"/v1/taps/{TOPIC}")).status_code == 401
    r = await client.get(f"/v1/taps/{TOPIC}", headers=accounts["customer"].auth)
    assert r.status_code == 403 and "taps.read" in r.json()["detail"]


async def test_a_data_user_gets_the_records_as_ndjson_masked_and_the_summary_last(client, accounts, registered):
    r = await client.get(f"/v1/taps/{TOPIC}", headers=accounts["data"].auth, params=_params(registered))

    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    *records, summary = _ndjson(r.text)
    assert [rec["key"] for rec in records] == [registered[0]] * 3
    # Personal fields are pseudonyms: the same value, the same pseudonym (countable, never readable).
    assert {rec["value"]["display_name"] for rec in records} == {records[0]["value"]["display_name"]}
    assert records[0]["value"]["display_name"].startswith("name:")
    assert all(rec["value"]["email"].startswith("email:") for rec in records)
    assert summary["summary"] is True and summary["returned"] == 3 and summary["stopped_by"] == "end"


async def test_sse_frames_records_with_their_position_then_the_summary(client, accounts, registered):
    r = await client.get(f"/v1/taps/{TOPIC}", headers={**accounts["data"].auth, "Accept": "text/event-stream"},
                         params=_params(registered, fields="email"))

    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [block.splitlines() for block in r.text.strip().split("\n\n")]
    *records, summary = events
    assert len(records) == 3
    for lines in records:
        position, kind, data = lines
        record = json.loads(data.removeprefix("data: "))
        assert position == f"id: {record['partition']}:{record['offset']}" and kind == "event: record"
        assert set(record["value"]) == {"email"}  # fields=email: the rest of the value left out
    assert summary[0] == "event: summary" and json.loads(summary[1].removeprefix("data: "))["returned"] == 3


async def test_unmasked_needs_the_permission(client, accounts, registered):
    refused = await client.get(f"/v1/taps/{TOPIC}", headers=accounts["data"].auth,
                               params=_params(registered, mask="false"))
    assert refused.status_code == 403 and "taps.unmask" in refused.json()["detail"]

    r = await client.get(f"/v1/taps/{TOPIC}", headers=accounts["admin"].auth, params=_params(registered, mask="false"))
    assert r.status_code == 200, r.text
    *records, _ = _ndjson(r.text)
    assert [rec["value"]["email"] for rec in records] == [f"ann{n}@example.test" for n in range(3)]


async def test_every_tap_is_audited_with_who_what_and_whether_masked(app, client, accounts, registered):
    r = await client.get(f"/v1/taps/{TOPIC}", headers=accounts["admin"].auth, params=_params(registered, mask="false"))
    assert r.status_code == 200

    async with app.state.edge.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT actor_id, actor, action, target, detail FROM audit_log "
                                  "WHERE actor_id = $1 ORDER BY id DESC LIMIT 1", uuid.UUID(accounts["admin"].id))
    assert (row["actor"], row["action"], row["target"]) == (accounts["admin"].email, "tap.unmask", f"topic:{TOPIC}")
    assert row["detail"]["masked"] is False and row["detail"]["where"] == _params(registered)["where"]
    assert row["detail"]["via"] == "http"


async def test_a_revoked_role_stops_the_next_tap_with_the_same_token(app, client, new_account, registered):
    # Given: an analyst whose token says `data`, tapping
    analyst = await new_account("data")
    assert (await client.get(f"/v1/taps/{TOPIC}", headers=analyst.auth, params=_params(registered))).status_code == 200

    # When: an admin revokes the role (the token still carries its permissions)
    from shopflow.access import revoke

    async with app.state.edge.pool.acquire() as conn:
        assert await revoke(conn, email=analyst.email, role="data", actor="test")

    # Then: the next tap with the same token is refused at once
    r = await client.get(f"/v1/taps/{TOPIC}", headers=analyst.auth, params=_params(registered))
    assert r.status_code == 403 and "taps.read" in r.json()["detail"]


@pytest.mark.parametrize("params,status,says", [
    ({"since": "10m", "at": "2026-01-01"}, 422, "give one start at most"),
    ({"until": "2026-01-01", "count": "3"}, 422, "give one end at most"),
    ({"since": "ten minutes"}, 422, ""),
    ({"where": "value.email =="}, 422, ""),
    ({"partition": "7"}, 422, "no partition 7"),
    ({"count": "0"}, 422, "greater than or equal to 1"),
    ({"max_seconds": "86400"}, 422, "less than or equal to 3600"),
    ({"color": "red"}, 422, "Extra inputs"),
])
async def test_bad_parameters_are_refused_saying_why(client, accounts, params, status, says):
    r = await client.get(f"/v1/taps/{TOPIC}", headers=accounts["data"].auth, params=params)
    assert r.status_code == status, r.text
    assert says in r.text


async def test_a_topic_outside_the_catalog_is_404_listing_the_tappable_ones(client, accounts):
    r = await client.get("/v1/taps/__consumer_offsets", headers=accounts["data"].auth)
    assert r.status_code == 404 and "users.dlq" in r.json()["detail"]


async def test_a_user_runs_two_taps_at_once_at_most_and_a_follow_stops_at_its_time_cap(app, client, new_account):
    analyst = await new_account("data")
    follow = {"follow": "true", "max_seconds": "3", "since": "1s", "where": "false"}
    running = [asyncio.create_task(client.get(f"/v1/taps/{TOPIC}", headers=analyst.auth, params=follow))
               for _ in range(2)]
    slots = f"shopflow:taps:running:{analyst.id}"

    async def both_running() -> bool:
        return await app.state.edge.redis.zcard(slots) == 2

    await eventually_async(both_running, timeout_s=10, what="two taps running")
    third = await client.get(f"/v1/taps/{TOPIC}", headers=analyst.auth, params=follow)
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1

    for done in await asyncio.gather(*running):
        *_, summary = _ndjson(done.text)
        assert summary["stopped_by"] == "interrupted" and "time cap of 3s" in summary["message"]
    assert await app.state.edge.redis.zcard(slots) == 0  # the slots are given back
