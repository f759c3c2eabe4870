"""The authorisation walk: every route, as anonymous, the customer who owns the order, another customer, an admin.

The table is the policy; a route added to the app without a row here fails
``test_the_table_covers_every_route``. Another customer's order is 404 (as a missing one: ids cannot
be probed); a customer on an admin route is 403; no token on a protected route is 401.
"""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration

WHO = ("anonymous", "owner", "other", "admin")


def row(anonymous: int, owner: int, other: int, admin: int) -> dict[str, int]:
    return dict(zip(WHO, (anonymous, owner, other, admin), strict=True))


def everyone(code: int) -> dict[str, int]:
    return row(code, code, code, code)


POLICY: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/v1/health"): everyone(200),
    ("GET", "/v1/health/ready"): everyone(200),
    ("POST", "/v1/auth/register"): everyone(201),
    ("POST", "/v1/auth/login"): everyone(200),
    ("POST", "/v1/auth/refresh"): everyone(200),
    ("POST", "/v1/auth/logout"): row(401, 204, 204, 204),
    ("GET", "/v1/users/me"): row(401, 200, 200, 200),
    ("POST", "/v1/orders"): row(401, 202, 202, 202),
    ("GET", "/v1/orders"): row(401, 200, 200, 200),
    ("GET", "/v1/orders/{order_id}"): row(401, 200, 404, 200),
    ("POST", "/v1/orders/{order_id}/cancel"): row(401, 202, 404, 202),
    ("GET", "/v1/admin/orders"): row(401, 403, 403, 200),
    ("POST", "/v1/admin/stock/{sku}/adjust"): row(401, 403, 403, 202),
}
CELLS = [(method, path, who) for (method, path), expected in POLICY.items() for who in WHO]


def test_the_table_covers_every_route(app):
    routes = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    assert routes == set(POLICY)


@pytest.fixture(scope="module")
async def world(client, new_account, skus, idem):
    accounts = {"owner": await new_account(), "other": await new_account(), "admin": await new_account("admin")}
    r = await client.post("/v1/orders", headers={**accounts["owner"].auth, **idem()},
                          json={"lines": [{"sku": skus["A"], "quantity": 1}], "payment_token": "tok"})
    assert r.status_code == 202
    return {"accounts": accounts, "order_id": r.json()["order_id"], "sku": skus["A"]}


@pytest.mark.parametrize("method,path,who", CELLS, ids=[f"{m} {p} as {w}" for m, p, w in CELLS])
async def test_the_walk(client, new_account, skus, idem, world, method, path, who):
    account = world["accounts"].get(who)
    headers = dict(account.auth) if account else {}
    body = None
    if method == "POST":
        headers.update(idem())
    if path == "/v1/auth/register":
        body = {"email": f"walk.{uuid.uuid4().hex[:10]}@example.test", "password": "hunter22!"}
    elif path in ("/v1/auth/login", "/v1/auth/refresh"):
        fresh = await new_account()
        body = ({"email": fresh.email, "password": fresh.password} if path.endswith("login")
                else {"refresh_token": fresh.refresh})
    elif path == "/v1/auth/logout" and account:
        # A new session of this identity, so logging it out leaves the shared tokens usable.
        r = await client.post("/v1/auth/login", json={"email": account.email, "password": account.password})
        headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    elif path == "/v1/orders" and method == "POST":
        body = {"lines": [{"sku": skus["B"], "quantity": 1}], "payment_token": "tok"}
    elif path.startswith("/v1/admin/stock"):
        body = {"delta": 1, "reason": "walk"}
    url = path.replace("{order_id}", world["order_id"]).replace("{sku}", world["sku"])
    r = await client.request(method, url, headers=headers, json=body)
    assert r.status_code == POLICY[(method, path)][who], r.text
    if r.status_code == 404:
        assert r.json() == {"detail": f"no order {world['order_id']}"}  # the same as for a missing order
