"""Who gets into the ops console: sign-in and sign-out, sessions and their cookie, permissions, CSRF.

On the real stack: ``shopflow ops`` as its own process, users in PostgreSQL, sessions in Redis.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest

from shopflow.access import revoke
from shopflow.db import connect
from shopflow.settings import Settings

pytestmark = pytest.mark.integration


def login_form(client: httpx.Client, user, next_path: str = "/", token: str | None = None) -> httpx.Response:
    """The sign-in form as a browser posts it (after GET /login set the sign-in token's cookie)."""
    page = client.get("/login")
    return client.post("/login", data={"email": user.email, "password": user.password, "next": next_path,
                                       "csrf_token": page.cookies["shopflow_ops_login"] if token is None else token})


def test_an_ops_user_signs_in_and_gets_a_strict_http_only_session_cookie(ops_console, ops_user_factory):
    # Given an ops user at the sign-in form, asked for by the consumer-groups page
    user = ops_user_factory("ops")
    with httpx.Client(base_url=ops_console) as browser:
        # When they sign in
        answer = login_form(browser, user, next_path="/groups")
        # Then they are sent back where they were going, with a session cookie no script can read
        assert answer.status_code == 303 and answer.headers["location"] == "/groups"
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("shopflow_ops="))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "path=/", "samesite=strict"} <= flags
        assert browser.get("/").status_code == 200


def test_a_wrong_password_is_refused_and_gives_no_session(ops_console, ops_user_factory):
    user = ops_user_factory("ops")
    with httpx.Client(base_url=ops_console) as browser:
        page = browser.get("/login")
        answer = browser.post("/login", data={"email": user.email, "password": "not-" + user.password,
                                              "csrf_token": page.cookies["shopflow_ops_login"]})
        assert answer.status_code == 401 and "Wrong e-mail or password" in answer.text
        assert "shopflow_ops" not in browser.cookies
        assert browser.get("/", headers={"Accept": "application/json"}).status_code == 401


def test_a_sign_in_without_its_form_token_is_refused(ops_console, ops_user_factory):
    """Login CSRF: a form posted from elsewhere has no token matching the pre-session cookie."""
    user = ops_user_factory("ops")
    with httpx.Client(base_url=ops_console) as browser:
        answer = login_form(browser, user, token=secrets.token_urlsafe(32))
        assert answer.status_code == 403 and "sign-in token" in answer.text
        assert "shopflow_ops" not in browser.cookies


def test_signing_in_again_rotates_the_session(ops_console, ops_user_factory):
    user = ops_user_factory("ops")
    with httpx.Client(base_url=ops_console) as browser:
        login_form(browser, user)
        first = browser.cookies["shopflow_ops"]
        login_form(browser, user)
        assert browser.cookies["shopflow_ops"] != first
        with httpx.Client(base_url=ops_console, cookies={"shopflow_ops": first}) as stale:
            assert stale.get("/?format=json").status_code == 401


def test_only_paths_of_the_console_are_followed_after_sign_in(ops_console, ops_user_factory):
    user = ops_user_factory("ops")
    with httpx.Client(base_url=ops_console) as browser:
        assert login_form(browser, user, next_path="//evil.example/x").headers["location"] == "/"


def test_sign_out_ends_the_session_and_needs_its_csrf_token(ops_console, ops_user_factory, ops_session):
    session = ops_session(ops_user_factory("ops"))
    # A sign-out without the token (a cross-site form) does nothing
    refused = session.client.post("/logout", headers={"Accept": "application/json"})
    assert refused.status_code == 403 and "missing or wrong CSRF token" in refused.json()["detail"]
    assert session.client.get("/?format=json").status_code == 200
    # With it, the session is gone from Redis, not only from the browser
    cookie = session.client.cookies["shopflow_ops"]
    assert session.client.post("/logout", headers=session.csrf).status_code == 303
    with httpx.Client(base_url=ops_console, cookies={"shopflow_ops": cookie}) as replay:
        assert replay.get("/?format=json").status_code == 401


def test_a_customer_is_refused_with_403(ops_user_factory, ops_session):
    session = ops_session(ops_user_factory("customer"))
    page = session.client.get("/groups")
    assert page.status_code == 403 and "ops.view" in page.text
    assert 'data-testid="nav"' not in page.text  # the console's areas are not shown to them
    assert session.client.get("/groups?format=json").json()["detail"].startswith("this needs the ops.view permission")


@pytest.mark.parametrize("path", ["/", "/groups", "/tap/orders"])
def test_an_anonymous_visitor_is_sent_to_sign_in_or_gets_401(ops_console, path):
    with httpx.Client(base_url=ops_console) as anonymous:
        page = anonymous.get(path)
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=%2F")
        assert anonymous.get(path, headers={"Accept": "application/json"}).status_code == 401


def test_a_revoked_role_takes_effect_at_the_next_request(ops_settings: Settings, ops_user_factory, ops_session):
    user = ops_user_factory("ops")
    session = ops_session(user)
    assert session.client.get("/?format=json").status_code == 200

    async def take_ops_away() -> None:
        conn = await connect(ops_settings)
        try:
            await revoke(conn, email=user.email, role="ops", actor="tests")
        finally:
            await conn.close()

    asyncio.run(take_ops_away())
    assert session.client.get("/?format=json").status_code == 403


def test_sign_ins_are_audited(ops_settings: Settings, ops_user_factory, ops_session):
    user = ops_user_factory("ops")
    ops_session(user)

    async def actions() -> list[str]:
        conn = await connect(ops_settings)
        try:
            rows = await conn.fetch("SELECT action FROM audit_log WHERE actor = $1", user.email)
            return [r["action"] for r in rows]
        finally:
            await conn.close()

    assert asyncio.run(actions()) == ["ops.login"]


def test_pages_carry_the_security_headers(ops_user_factory, ops_session):
    page = ops_session(ops_user_factory("ops")).client.get("/")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"


async def test_sign_in_attempts_are_limited_per_address(ops_settings: Settings):
    """The console in-process with a limit of 2 attempts, called from an address of this test's own."""
    from shopflow.console.main import create_app

    app = create_app(ops_settings.model_copy(update={"ops_login_attempts": 2}))
    address = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://ops") as c:
        token = (await c.get("/login")).cookies["shopflow_ops_login"]
        form = {"email": "nobody@example.test", "password": "wrong-password", "csrf_token": token}
        statuses = [(await c.post("/login", data=form)).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        refused = await c.post("/login", data=form, headers={"Accept": "application/json"})
        assert "too many sign-in attempts" in refused.json()["detail"] and int(refused.headers["retry-after"]) > 0
