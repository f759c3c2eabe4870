"""Idempotency-Key replays and refusals, concurrent duplicates, and the per-user rate limit (real Redis, Kafka)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from shopflow.topologies.catalog import ORDER_COMMANDS

pytestmark = pytest.mark.integration


def _order(skus, qty: int = 1) -> dict:
    return {"lines": [{"sku": skus["A"], "quantity": qty}], "payment_token": "tok"}


def _produced_for(messages, user_id: str, codec) -> list[str]:
    return [d["order_id"] for d in (codec.decode(m.value()) for m in messages) if d.get("user_id") == user_id]


async def test_same_key_same_body_replays_the_first_response(client, new_account, skus, codec, topic_reader):
    acct = await new_account()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    mark = topic_reader.mark(ORDER_COMMANDS)
    first = await client.post("/v1/orders", json=_order(skus), headers={**acct.auth, **key})
    # Same body, keys in another order and other whitespace: the same request.
    same = b'{ "payment_token": "tok", "lines": [{"quantity": 1, "sku": "%s"}]}' % skus["A"].encode()
    replay = await client.post("/v1/orders", content=same,
                               headers={**acct.auth, **key, "Content-Type": "application/json"})
    assert first.status_code == replay.status_code == 202
    assert replay.json() == first.json() and replay.headers["location"] == first.headers["location"]
    assert replay.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    # Both were acknowledged (acks=all) before they were answered: everything is on the topic by now.
    found = topic_reader.since(ORDER_COMMANDS, mark)
    assert _produced_for(found, acct.id, codec) == [first.json()["order_id"]]


async def test_same_key_other_body_is_refused_and_produces_nothing(client, new_account, skus):
    acct = await new_account()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert (await client.post("/v1/orders", json=_order(skus), headers={**acct.auth, **key})).status_code == 202
    other = await client.post("/v1/orders", json=_order(skus, 2), headers={**acct.auth, **key})
    assert other.status_code == 422
    assert "already used for a different request" in other.json()["detail"]
    # The key is the caller's: another user may use the same key for their own request.
    someone = await new_account()
    assert (await client.post("/v1/orders", json=_order(skus, 2), headers={**someone.auth, **key})).status_code == 202


async def test_a_refused_request_does_not_use_up_its_key(client, new_account, skus):
    acct = await new_account()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    bad = await client.post("/v1/orders", headers={**acct.auth, **key},
                            json={"lines": [{"sku": "NOPE-1", "quantity": 1}], "payment_token": "tok"})
    assert bad.status_code == 422
    fixed = await client.post("/v1/orders", json=_order(skus), headers={**acct.auth, **key})
    assert fixed.status_code == 202  # only a 2xx is remembered


async def test_concurrent_duplicates_produce_one_command(app, client, new_account, skus):
    acct = await new_account()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    edge = app.state.edge
    calls: list[str] = []
    real_send, real_execute = edge.producer.send, edge.idempotency._pipeline.execute
    duplicate_met_first = asyncio.Event()

    async def watched_execute(*args):
        result = await real_execute(*args)
        if args[0] == "GET" and result is not None and json.loads(result)["state"] == "running":
            duplicate_met_first.set()  # a duplicate read the key while the first still held it
        return result

    async def held_send(topic, k, record):
        calls.append(k)
        # The first request stays in flight until a duplicate has found its key taken.
        await asyncio.wait_for(duplicate_met_first.wait(), 10)
        return await real_send(topic, k, record)

    edge.producer.send, edge.idempotency._pipeline.execute = held_send, watched_execute
    try:
        results = await asyncio.gather(*(client.post("/v1/orders", json=_order(skus), headers={**acct.auth, **key})
                                          for _ in range(6)))
    finally:
        del edge.producer.send, edge.idempotency._pipeline.execute
    assert duplicate_met_first.is_set()
    assert [r.status_code for r in results] == [202] * 6
    assert len({r.json()["order_id"] for r in results}) == 1 and len(calls) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in results) == 5


async def test_sign_up_honours_an_idempotency_key(client):
    body = {"email": f"idem.{uuid.uuid4().hex[:8]}@example.test", "password": "hunter22!"}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/v1/auth/register", json=body, headers=key)
    retry = await client.post("/v1/auth/register", json=body, headers=key)
    plain = await client.post("/v1/auth/register", json=body)
    assert (first.status_code, retry.status_code, plain.status_code) == (201, 201, 409)
    assert retry.json() == first.json()


async def test_the_rate_limit_answers_429_with_retry_after(api_settings, skus):
    from shopflow.api.main import create_app

    limited = create_app(api_settings.model_copy(update={"rate_limit_per_user": 3, "rate_limit_window_s": 30}))
    async with (limited.router.lifespan_context(limited),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://edge") as c):
        email = f"rl.{uuid.uuid4().hex[:8]}@example.test"
        await c.post("/v1/auth/register", json={"email": email, "password": "hunter22!"})
        token = (await c.post("/v1/auth/login", json={"email": email, "password": "hunter22!"})).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        codes = [(await c.get("/v1/users/me", headers=auth)).status_code for _ in range(3)]
        refused = await c.get("/v1/users/me", headers=auth)
        command = await c.post("/v1/orders", json=_order(skus),
                               headers={**auth, "Idempotency-Key": str(uuid.uuid4())})
        # The limit is per user: another user is not affected.
        email2 = f"rl.{uuid.uuid4().hex[:8]}@example.test"
        await c.post("/v1/auth/register", json={"email": email2, "password": "hunter22!"})
        token2 = (await c.post("/v1/auth/login", json={"email": email2, "password": "hunter22!"})).json()
        other = await c.get("/v1/users/me", headers={"Authorization": f"Bearer {token2['access_token']}"})
    assert codes == [200, 200, 200]
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 30
    assert "rate limit of 3" in refused.json()["detail"]
    assert command.status_code == 429  # counted before anything is produced
    assert other.status_code == 200
