"""``make demo`` through the edge: what a client app does, over HTTP only, against a running edge.

Registers a customer, makes sure a product is on sale with stock (an admin created with
``shopflow.api.users.create_admin`` adds the product through ``POST /v1/products`` if missing, and
stock through ``POST /v1/admin/stock/{sku}/adjust``), fills the cart, checks out, and follows the order
with ``GET /v1/orders/{id}?wait=`` to its outcome, printing each step. The admin also gives the product
a photo: a presigned POST straight to the object store, a confirm, then the image agent's thumbnails
show up in the product's search hit. Last, the e-mail the customer received about the order's outcome.

It needs ``shopflow api`` (the edge), ``shopflow worker`` (the saga and the carts table) and
``shopflow projection`` (the orders read model behind ``GET /v1/orders``), ``shopflow images`` and
``shopflow indexer`` (the photo's thumbnails in search), ``shopflow notifications`` and ``shopflow notifier``
(the customer's e-mail about the order, read back from the stack's mailpit). What is missing is said,
with the command that starts it, instead of a traceback: ``run`` returns False then.
"""

from __future__ import annotations

import io
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from shopflow.settings import Settings

DEMO_SKU = "DEMO-EDGE-LAMP"
DEMO_PRICE = {"amount_minor": 2499, "currency": "EUR"}
FINAL = ("CONFIRMED", "CANCELLED", "REFUNDED")


class EdgeDemoError(RuntimeError):
    """A step failed; the message says what and what to start or do."""


class _Client:
    """httpx with the demo's conventions: a fresh Idempotency-Key per command, errors as EdgeDemoError."""

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(30.0, connect=3.0))
        self.base_url = base_url

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
             params: dict | None = None, ok: tuple[int, ...] = (200, 201, 202, 204)) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if method in ("POST", "PATCH", "DELETE"):
            headers["Idempotency-Key"] = str(uuid.uuid4())
        try:
            r = self.http.request(method, path, headers=headers, json=json, params=params)
        except httpx.ConnectError:
            raise EdgeDemoError(f"no ShopFlow edge answers at {self.base_url}: start it with `shopflow api` "
                                "(and the stack with `shopflow stack up`)") from None
        except httpx.HTTPError as exc:
            raise EdgeDemoError(f"{method} {path} failed: {exc!r}") from None
        if r.status_code not in ok:
            raise EdgeDemoError(f"{method} {path} answered {r.status_code}: {_detail(r)}")
        return r


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail"))
    except ValueError:
        return r.text[:300]


def _check_worker(settings: Settings) -> None:
    try:
        httpx.get(f"{settings.worker_url}/", timeout=2)
    except httpx.HTTPError:
        raise EdgeDemoError(f"no Faust worker answers at {settings.worker_url}: start one with `shopflow worker` "
                            "(carts and the order saga run there)") from None


def _money(m: dict | None) -> str:
    return f"{m['amount_minor'] / 100:.2f} {m['currency']}" if m else "-"


def run(settings: Settings, base_url: str | None = None, say: Callable[[str], None] = print) -> bool:
    """The walk; True when the order reached an outcome. Needs a running edge, worker and projection."""
    base_url = (base_url or f"http://{settings.host}:{settings.api_port}").rstrip("/")
    client = _Client(base_url)
    try:
        _walk(settings, client, say)
        return True
    except EdgeDemoError as exc:
        say(f"edge demo stopped: {exc}")
        return False
    finally:
        client.close()


def _walk(settings: Settings, client: _Client, say: Callable[[str], None]) -> None:
    from shopflow.api.users import create_admin

    say(f"== through the edge at {client.base_url}")
    ready = client.call("GET", "/v1/health/ready", ok=(200, 503)).json()
    if ready.get("status") != "ok":
        raise EdgeDemoError(f"the edge is up but not ready: {ready.get('checks')}; check `shopflow stack status`")
    _check_worker(settings)
    say("  edge ready, worker answering")

    # An admin for the catalog and stock; created in PostgreSQL directly, as `shopflow users create-admin` does.
    admin_email, admin_password = f"demo.admin.{uuid.uuid4().hex[:8]}@example.test", secrets.token_urlsafe(12)
    try:
        create_admin(settings, admin_email, admin_password, display_name="Demo admin")
    except Exception as exc:  # PostgreSQL or the registry unreachable from here
        raise EdgeDemoError(f"could not create the demo admin ({exc!r}); "
                            "is the stack up (`shopflow stack up`)?") from None
    admin = _login(client, admin_email, admin_password)

    email, password = f"demo.{uuid.uuid4().hex[:8]}@example.test", secrets.token_urlsafe(12)
    client.call("POST", "/v1/auth/register", json={"email": email, "password": password, "display_name": "Demo"})
    customer = _login(client, email, password)
    say(f"1. registered customer {email} and signed in")

    if client.call("GET", f"/v1/products/{DEMO_SKU}", ok=(200, 404)).status_code == 404:
        client.call("POST", "/v1/products", token=admin, json={
            "sku": DEMO_SKU, "name": "Edge demo lamp", "description": "A lamp sold by the edge demo.",
            "price": DEMO_PRICE})
        say(f"2. product {DEMO_SKU} created by the admin ({_money(DEMO_PRICE)})")
    else:
        say(f"2. product {DEMO_SKU} already in the catalog")
    _photo(client, admin, say)
    client.call("POST", f"/v1/admin/stock/{DEMO_SKU}/adjust", token=admin, json={"delta": 5, "reason": "edge demo"})
    say(f"   +5 units of stock for {DEMO_SKU} (StockAdjusted to the inventory agent)")

    client.call("POST", "/v1/cart/items", token=customer, json={"sku": DEMO_SKU, "quantity": 1})
    client.call("PATCH", f"/v1/cart/items/{DEMO_SKU}", token=customer, json={"quantity": 2})
    cart = client.call("GET", "/v1/cart", token=customer, params={"wait": 10}).json()
    if not cart["up_to_date"]:
        raise EdgeDemoError("the cart did not show the changes within 10 s; is the worker consuming? "
                            "see its log (.shopflow/logs/)")
    lines = ", ".join(f"{line['sku']} x{line['quantity']}" for line in cart["items"])
    say(f"3. cart filled: {lines} (subtotal {_money(cart['subtotal'])})")

    r = client.call("POST", "/v1/cart/checkout", token=customer, json={"payment_token": "tok_approve"})
    order = r.json()
    say(f"4. checked out: order {order['order_id']} accepted ({_money(order['total'])}), follow at "
        f"{r.headers['location']}")

    _follow(client, customer, order["order_id"], say)
    cart = client.call("GET", "/v1/cart", token=customer, params={"wait": 10}).json()
    say(f"6. cart now {cart['status']} (order {cart['checked_out_order']}), {len(cart['items'])} lines")
    _email(settings, email, order["order_id"], say)


def _email(settings: Settings, address: str, order_id: str, say: Callable[[str], None], timeout_s: float = 60) -> None:
    """The e-mail the customer was sent about the order's outcome, read back from the stack's mailpit."""
    from shopflow.deploy.mail_server import Mailbox

    deadline = time.monotonic() + timeout_s
    try:
        with Mailbox(settings) as mailbox:
            # The customer was also welcomed: the order's e-mail is the one that names the order.
            while not (received := [m for m in mailbox.to(address) if order_id in m.subject + m.text]):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)  # the notifications agent, then the notifier's SMTP send
    except httpx.HTTPError as exc:
        raise EdgeDemoError(f"the stack's mail server did not answer ({exc!r}): `shopflow stack status` shows it, "
                            "`shopflow stack up` starts it") from None
    if not received:
        raise EdgeDemoError(f"no e-mail about order {order_id} reached {address} in {timeout_s:.0f}s: are "
                            "`shopflow notifications` and `shopflow notifier` running (and through any backlog)? "
                            "see their logs in .shopflow/logs/")
    mail = received[0]
    first_line = next((line.strip() for line in mail.text.splitlines() if line.strip()), "")
    say(f"7. e-mail to {address}: \"{mail.subject}\" (mailpit, port {settings.mail_api_port})")
    say(f"   {first_line}")


def _photo(client: _Client, admin: str, say: Callable[[str], None], timeout_s: float = 60) -> None:
    """A generated JPEG for the product: presigned POST to the store, confirm, thumbnails in its search hit."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (800, 600), (238, 232, 213))
    ImageDraw.Draw(picture).ellipse((250, 120, 550, 420), fill=(181, 137, 0))
    jpeg = io.BytesIO()
    picture.save(jpeg, "JPEG", quality=85)
    issued = client.call("POST", f"/v1/admin/products/{DEMO_SKU}/images", token=admin,
                         json={"content_type": "image/jpeg"}).json()
    try:
        stored = httpx.post(issued["upload"]["url"], data=issued["upload"]["fields"],
                            files={"file": ("lamp.jpg", jpeg.getvalue(), "image/jpeg")}, timeout=30)
    except httpx.HTTPError as exc:
        raise EdgeDemoError(f"the object store did not answer the upload ({exc!r}): `shopflow stack status` shows "
                            "it, `shopflow stack up` starts it") from None
    if stored.status_code != 204:
        raise EdgeDemoError(f"the object store refused the upload ({stored.status_code}): {stored.text[:200]}")
    client.call("POST", issued["confirm"], token=admin)
    image_id = issued["upload_id"]
    say(f"   photo {image_id} uploaded straight to the object store (presigned POST) and confirmed")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = client.call("GET", issued["state"], token=admin).json()
        if state["state"] == "rejected":
            raise EdgeDemoError(f"the image agent rejected the photo: {state['reason']} ({state['detail']})")
        hits = client.call("GET", "/v1/search", params={"q": DEMO_SKU}).json()["hits"]
        images = [i for h in hits if h["sku"] == DEMO_SKU for i in h["images"] if i["id"] == image_id]
        if images:
            say(f"   search hit for {DEMO_SKU} now carries its thumbnails (each redirects to a presigned GET):")
            for size, path in images[0]["links"].items():
                say(f"     {size:>8}: {client.base_url}{path}")
            return
        time.sleep(0.3)  # the agent, Debezium and the indexer take a second or two
    raise EdgeDemoError(f"the photo's thumbnails were not in {DEMO_SKU}'s search hit after {timeout_s:.0f}s (upload "
                        f"state {state['state']}): is `shopflow images` running, and `shopflow indexer`? see their "
                        "logs in .shopflow/logs/")


def _login(client: _Client, email: str, password: str) -> str:
    return client.call("POST", "/v1/auth/login", json={"email": email, "password": password}).json()["access_token"]


def _follow(client: _Client, token: str, order_id: str, say: Callable[[str], None], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        body = client.call("GET", f"/v1/orders/{order_id}", token=token, params={"wait": 10}).json()
        if body["status"] != last:
            last = body["status"]
            say(f"5. order {order_id}: {last}" + (f" ({body['reason']})" if body.get("reason") else ""))
        if last in FINAL:
            return
    if last == "ACCEPTED":
        raise EdgeDemoError(f"order {order_id} stayed ACCEPTED for {timeout_s:.0f}s: the orders read model has not "
                            "reached it. Either the projection is still working through a backlog on `orders` (after "
                            "benchmarks on this stack; its log counts what it applied, run the demo again once it is "
                            "through) or no `shopflow projection` / `shopflow worker` is running")
    raise EdgeDemoError(f"order {order_id} did not reach an outcome in {timeout_s:.0f}s (last {last}); "
                        "see the worker's log and `shopflow audit`")
