"""Accounts on the real stack: sign-up with its outbox event, login, refresh rotation, logout, admins."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shopflow.access import Role
from shopflow.api.users import EmailTaken, create_admin
from shopflow.schemas.users import Role as WireRole
from shopflow.schemas.users import UserRegistered
from shopflow.topologies.catalog import USERS

pytestmark = pytest.mark.integration


def _email() -> str:
    return f"Ann.{uuid.uuid4().hex[:10]}@Example.test"


async def test_sign_up_writes_the_user_and_its_event_in_the_outbox(client, app, codec):
    email = _email()
    r = await client.post("/v1/auth/register", json={"email": email, "password": "hunter22!", "display_name": "Ann"})
    assert r.status_code == 201, r.text
    user = r.json()
    assert r.headers["location"] == "/v1/users/me"
    assert (user["email"], user["display_name"], user["roles"]) == (email.lower(), "Ann", ["customer"])
    assert "password" not in r.text and "hash" not in r.text

    async with app.state.edge.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM outbox WHERE aggregateid = $1", user["id"])
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", uuid.UUID(user["id"]))
    assert stored.startswith("$argon2id$")
    assert len(rows) == 1
    row = rows[0]
    assert (row["aggregatetype"], row["type"]) == (USERS.name, "UserRegistered")
    event = UserRegistered.from_avro(codec.decode(bytes(row["payload"])))
    assert (event.user_id, event.email, event.display_name, event.role) == (user["id"], email.lower(), "Ann",
                                                                           WireRole.CUSTOMER)
    assert str(row["id"]) == event.event_id


async def test_the_same_email_twice_is_a_conflict_and_writes_no_second_event(client, app):
    email = _email()
    assert (await client.post("/v1/auth/register", json={"email": email, "password": "hunter22!"})).status_code == 201
    r = await client.post("/v1/auth/register", json={"email": email.upper(), "password": "other-pass"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    async with app.state.edge.pool.acquire() as conn:
        count = await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email.lower())
        events = await conn.fetchval(
            "SELECT count(*) FROM outbox o JOIN users u ON o.aggregateid = u.id::text WHERE u.email = $1",
            email.lower())
    assert count == 1 and events == 1


async def test_login_refresh_logout(client, new_account):
    acct = await new_account()
    assert (await client.get("/v1/users/me", headers=acct.auth)).json()["email"] == acct.email

    wrong = await client.post("/v1/auth/login", json={"email": acct.email, "password": "not-it-at-all"})
    nobody = await client.post("/v1/auth/login", json={"email": _email(), "password": "whatever1"})
    assert wrong.status_code == nobody.status_code == 401
    assert wrong.json() == nobody.json() == {"detail": "wrong e-mail or password"}  # no account probing

    # Refresh rotates: the new pair works, the spent refresh token does not work twice.
    r = await client.post("/v1/auth/refresh", json={"refresh_token": acct.refresh})
    assert r.status_code == 200, r.text
    fresh = r.json()
    again = await client.post("/v1/auth/refresh", json={"refresh_token": acct.refresh})
    assert again.status_code == 401 and "already used" in again.json()["detail"]
    access_as_refresh = await client.post("/v1/auth/refresh", json={"refresh_token": fresh["access_token"]})
    assert access_as_refresh.status_code == 401

    auth = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert (await client.get("/v1/users/me", headers=auth)).status_code == 200
    out = await client.post("/v1/auth/logout", headers=auth, json={"refresh_token": fresh["refresh_token"]})
    assert out.status_code == 204
    after = await client.get("/v1/users/me", headers=auth)
    assert after.status_code == 401 and "revoked" in after.json()["detail"]
    assert after.headers["www-authenticate"].startswith("Bearer")
    revoked = await client.post("/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert revoked.status_code == 401
    # The first access token (not logged out) still works until it expires.
    assert (await client.get("/v1/users/me", headers=acct.auth)).status_code == 200


async def test_concurrent_refreshes_with_one_token_yield_one_new_pair(client, new_account):
    acct = await new_account()
    results = await asyncio.gather(*(client.post("/v1/auth/refresh", json={"refresh_token": acct.refresh})
                                     for _ in range(5)))
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401, 401]


async def test_logout_refuses_someone_elses_refresh_token(client, new_account):
    a, b = await new_account(), await new_account()
    r = await client.post("/v1/auth/logout", headers=a.auth, json={"refresh_token": b.refresh})
    assert r.status_code == 400 and "another account" in r.json()["detail"]
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": b.refresh})).status_code == 200


async def test_create_admin_makes_or_promotes_an_admin(app, client, api_settings, new_account):
    email, password = _email(), "admin-pass-1"
    user = await asyncio.to_thread(create_admin, api_settings, email, password)
    assert user.roles == [Role.ADMIN]
    with pytest.raises(EmailTaken):
        await asyncio.to_thread(create_admin, api_settings, email, password)
    with pytest.raises(ValueError):
        await asyncio.to_thread(create_admin, api_settings, _email(), "short")

    r = await client.post("/v1/auth/login", json={"email": email, "password": password})
    admin_auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await client.get("/v1/admin/orders", headers=admin_auth)).status_code == 200

    customer = await new_account()
    assert (await client.get("/v1/admin/orders", headers=customer.auth)).status_code == 403
    promoted = await asyncio.to_thread(create_admin, api_settings, customer.email, "ignored-pw", None, True)
    assert promoted.id == customer.id and promoted.roles == [Role.ADMIN, Role.CUSTOMER]
    # Permissions are in the token: the promotion shows at the next refresh.
    r = await client.post("/v1/auth/refresh", json={"refresh_token": customer.refresh})
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await client.get("/v1/admin/orders", headers=auth)).status_code == 200
    # Both the new admin and the promotion are grants in the audit log, by whoever ran the command.
    async with app.state.edge.pool.acquire() as conn:
        grants = await conn.fetch("SELECT target, actor, detail->>'role' AS role FROM audit_log "
                                  "WHERE action = 'role.grant' AND target = ANY($1::text[]) ORDER BY id",
                                  [email.lower(), customer.email.lower()])
    assert [(g["target"], g["role"]) for g in grants] == [(email.lower(), "admin"), (customer.email.lower(), "admin")]
    assert all(g["actor"].startswith("cli:") for g in grants)
