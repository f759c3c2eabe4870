"""The authorisation walk: every route, as anonymous, the customer who owns the order, another customer, an admin.

The table is the policy; a route added to the app without a row here fails
``test_the_table_covers_every_route``. Another customer's order is 404 (as a missing one: ids cannot
be probed); a customer on an admin route is 403; no token on a protected route is 401.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
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
    ("GET", "/v1/cart"): row(401, 200, 200, 200),  # one cart per user: everyone reaches only their own
    ("DELETE", "/v1/cart"): row(401, 202, 202, 202),
    ("POST", "/v1/cart/items"): row(401, 202, 202, 202),
    ("PATCH", "/v1/cart/items/{sku}"): row(401, 202, 202, 202),
    ("DELETE", "/v1/cart/items/{sku}"): row(401, 202, 202, 202),
    ("POST", "/v1/cart/checkout"): row(401, 202, 202, 202),
    ("GET", "/v1/wishlist"): row(401, 200, 200, 200),
    ("PUT", "/v1/wishlist/{sku}"): row(401, 200, 200, 200),
    ("DELETE", "/v1/wishlist/{sku}"): row(401, 204, 204, 204),
    ("GET", "/v1/admin/orders"): row(401, 403, 403, 200),
    ("POST", "/v1/admin/stock/{sku}/adjust"): row(401, 403, 403, 202),
    ("GET", "/v1/products/{sku}"): everyone(200),
    ("POST", "/v1/products"): row(401, 403, 403, 201),
    ("PATCH", "/v1/products/{sku}"): row(401, 403, 403, 200),
    ("DELETE", "/v1/products/{sku}"): row(401, 403, 403, 200),
    ("GET", "/v1/categories"): everyone(200),
    ("POST", "/v1/categories"): row(401, 403, 403, 201),
    ("PATCH", "/v1/categories/{category_id}"): row(401, 403, 403, 200),
    ("DELETE", "/v1/categories/{category_id}"): row(401, 403, 403, 204),
    ("GET", "/v1/search"): everyone(200),
    ("GET", "/v1/search/suggest"): everyone(200),
    ("GET", "/v1/taps/{topic}"): row(401, 403, 403, 200),  # taps.read: data, ops and admin (tests/api/test_taps_route)
    ("POST", "/v1/admin/products/{sku}/images"): row(401, 403, 403, 201),
    # An upload id the walk never made: the admin reaches the route and is told it is not there.
    ("POST", "/v1/admin/products/{sku}/images/{upload_id}/confirm"): row(401, 403, 403, 404),
    ("GET", "/v1/admin/products/{sku}/images/{upload_id}"): row(401, 403, 403, 404),
    ("DELETE", "/v1/admin/products/{sku}/images/{upload_id}"): row(401, 403, 403, 404),
    ("GET", "/v1/products/{sku}/images/{image_id}/{size}"): everyone(404),  # public, as products are
    ("GET", "/v1/users/me/notification-preferences"): row(401, 200, 200, 200),  # each user's own
    ("PUT", "/v1/users/me/notification-preferences"): row(401, 200, 200, 200),
    ("GET", "/v1/users/me/notifications"): row(401, 200, 200, 200),
    ("GET", "/v1/push/application-server-key"): row(401, 200, 200, 200),
    ("POST", "/v1/users/me/push-subscriptions"): row(401, 201, 201, 201),
    ("GET", "/v1/users/me/push-subscriptions"): row(401, 200, 200, 200),
    # A subscription id the walk never made: as another user's, so ids cannot be probed.
    ("DELETE", "/v1/users/me/push-subscriptions/{subscription_id}"): row(401, 404, 404, 404),
    ("GET", "/v1/admin/notification-templates"): row(401, 403, 403, 200),
    ("POST", "/v1/admin/notification-templates"): row(401, 403, 403, 201),
    ("PUT", "/v1/admin/notification-templates/{template}/{channel}/{locale}"): row(401, 403, 403, 200),
    ("POST", "/v1/admin/notification-templates/preview"): row(401, 403, 403, 200),
    ("PUT", "/v1/admin/stock/{sku}/low-stock-threshold"): row(401, 403, 403, 202),
}
CELLS = [(method, path, who) for (method, path), expected in POLICY.items() for who in WHO]


def test_the_table_covers_every_route(app):
    routes = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    assert routes == set(POLICY)


def walk_product(sku: str):
    from shopflow.catalog import ProductInput

    return ProductInput(sku=sku, name="Walk lamp", price_minor=100, currency="EUR")


def walk_template(name: str) -> dict[str, str]:
    """An SMS template (text only) that renders with any params."""
    return {"template": name, "channel": "SMS", "locale": "en", "text_body": "Walk text"}


def walk_push_subscription() -> dict[str, object]:
    """A subscription of a local endpoint nobody serves (registering it sends nothing)."""
    key = base64.urlsafe_b64encode(b"\x04" + secrets.token_bytes(64)).rstrip(b"=").decode()
    auth = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    return {"endpoint": f"http://127.0.0.1:9/walk/{uuid.uuid4().hex}", "keys": {"p256dh": key, "auth": auth}}


async def scrap_product(catalog, sku: str) -> None:
    """Delete a product the walk made, if it is still there (catalog writes are not in the test schema)."""
    from shopflow.catalog import NotFound

    with contextlib.suppress(NotFound):
        await catalog.delete_product(sku)


async def scrap_category(catalog, category_id: int) -> None:
    from shopflow.catalog import NotFound

    with contextlib.suppress(NotFound):
        await catalog.delete_category(category_id)


@pytest.fixture(scope="module")
async def world(app, client, new_account, skus, idem):
    accounts = {"owner": await new_account(), "other": await new_account(), "admin": await new_account("admin")}
    r = await client.post("/v1/orders", headers={**accounts["owner"].auth, **idem()},
                          json={"lines": [{"sku": skus["A"], "quantity": 1}], "payment_token": "tok"})
    assert r.status_code == 202
    order_id = r.json()["order_id"]
    catalog = app.state.edge.catalog
    product = await catalog.create_product(walk_product(f"WALK-{uuid.uuid4().hex[:10]}"))
    category = await catalog.create_category(f"walk-{uuid.uuid4().hex[:10]}", "Walk")
    template = walk_template(f"walk_{uuid.uuid4().hex[:10]}")
    r = await client.post("/v1/admin/notification-templates", headers=accounts["admin"].auth, json=template)
    assert r.status_code == 201, r.text
    yield {"accounts": accounts, "order_id": order_id, "sku": skus["A"],
           "catalog": catalog, "product": product.sku, "category": category.id, "template": template["template"]}
    await scrap_product(catalog, product.sku)
    await scrap_category(catalog, category.id)


@pytest.mark.parametrize("method,path,who", CELLS, ids=[f"{m} {p} as {w}" for m, p, w in CELLS])
async def test_the_walk(client, new_account, skus, idem, world, method, path, who):
    account = world["accounts"].get(who)
    headers = dict(account.auth) if account else {}
    body = None
    if method in ("POST", "PATCH", "DELETE"):
        headers.update(idem())
    catalog = world["catalog"]
    sku, category_id = world["sku"], world["category"]
    made_sku: str | None = None
    made_category: int | None = None
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
    elif path == "/v1/cart/items":
        body = {"sku": skus["B"], "quantity": 1}
    elif path.startswith("/v1/cart/items/") and method == "PATCH":
        body = {"quantity": 2}
    elif path == "/v1/cart/checkout":
        body = {"payment_token": "tok_approve"}
        if account:  # something to check out, visible before the checkout reads the cart
            r = await client.post("/v1/cart/items", headers={**account.auth, **idem()},
                                  json={"sku": skus["B"], "quantity": 1})
            assert r.status_code == 202, r.text
            r = await client.get("/v1/cart", headers=account.auth, params={"wait": 15})
            assert r.json()["up_to_date"] and r.json()["items"], r.text
    elif path == "/v1/wishlist/{sku}" and method == "DELETE" and account:
        r = await client.put(f"/v1/wishlist/{sku}", headers=account.auth)
        assert r.status_code == 200, r.text
    elif path.endswith("/low-stock-threshold"):
        body = {"threshold": 3}
    elif path.startswith("/v1/admin/stock"):
        body = {"delta": 1, "reason": "walk"}
    elif path == "/v1/users/me/notification-preferences" and method == "PUT":
        body = {"channels": {"SMS": False}, "quiet_hours": None}
    elif path == "/v1/users/me/push-subscriptions" and method == "POST":
        body = walk_push_subscription()
    elif path == "/v1/admin/notification-templates" and method == "POST":
        body = walk_template(f"walk_{uuid.uuid4().hex[:10]}")
    elif path.startswith("/v1/admin/notification-templates/{template}"):
        body = {"text_body": "Walk text, again"}
    elif path == "/v1/admin/notification-templates/preview":
        body = {"template": world["template"], "channel": "SMS", "draft": {"text_body": "Walk preview"}}
    elif path.startswith("/v1/admin/products/"):
        sku = world["product"]  # a catalog product (the seeded skus are the test schema's stock only)
        body = {"content_type": "image/jpeg"} if path.endswith("/images") else None
    elif path == "/v1/products":
        made_sku = f"WALK-{uuid.uuid4().hex[:10]}"
        body = {"sku": made_sku, "name": "Walk lamp", "price": {"amount_minor": 100, "currency": "EUR"}}
    elif path.startswith("/v1/products/"):
        sku = world["product"]
        if method == "DELETE":  # a product of its own, so the other cells still find theirs
            made_sku = sku = (await catalog.create_product(walk_product(f"WALK-{uuid.uuid4().hex[:10]}"))).sku
        elif method == "PATCH":
            body = {"name": f"Walk lamp {uuid.uuid4().hex[:6]}"}
    elif path == "/v1/categories" and method == "POST":
        body = {"slug": f"walk-{uuid.uuid4().hex[:10]}", "name": "Walk"}
    elif path.startswith("/v1/categories/"):
        if method == "DELETE":
            made_category = category_id = (await catalog.create_category(f"walk-{uuid.uuid4().hex[:10]}", "Walk")).id
        else:
            body = {"name": "Walk renamed"}
    url = (path.replace("{order_id}", world["order_id"]).replace("{sku}", sku)
           .replace("{category_id}", str(category_id)).replace("{topic}", "users")
           .replace("{upload_id}", str(uuid.uuid4())).replace("{image_id}", str(uuid.uuid4())).replace("{size}", "160")
           .replace("{subscription_id}", str(uuid.uuid4())).replace("{template}", world["template"])
           .replace("{channel}", "SMS").replace("{locale}", "en"))
    params = ({"prefix": "walk"} if path == "/v1/search/suggest"
              else {"limit": 1, "max_scanned": 10} if path == "/v1/taps/{topic}" else None)
    r = await client.request(method, url, headers=headers, json=body, params=params)
    if made_sku is not None:
        await scrap_product(catalog, made_sku)
    if made_category is None and path == "/v1/categories" and r.status_code == 201:
        made_category = r.json()["id"]
    if made_category is not None:
        await scrap_category(catalog, made_category)
    assert r.status_code == POLICY[(method, path)][who], r.text
    if r.status_code == 404 and "{order_id}" in path:
        assert r.json() == {"detail": f"no order {world['order_id']}"}  # the same as for a missing order
