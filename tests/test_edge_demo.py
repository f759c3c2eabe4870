"""The edge demo's product photo (shopflow/edge_demo.py) against a stand-in edge and store: the presigned
POST carries a real JPEG, the confirm follows, and the search hit's image links are printed; and the
customer's e-mail about the order, read from a stand-in mailbox."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from PIL import Image

from shopflow import edge_demo
from shopflow.deploy import mail_server
from shopflow.deploy.mail_server import ReceivedMail
from shopflow.images import image_links
from shopflow.settings import Settings

IMAGE_ID = "0b7c3f5e-8a41-4c1d-9b1e-3f2d6c7a8e90"
STATE = f"/v1/admin/products/{edge_demo.DEMO_SKU}/images/{IMAGE_ID}"


def edge(requests: list[str], searches_before_hit: int) -> httpx.MockTransport:
    """Issues one upload, takes its confirm, and shows the image in search after a few searches."""
    searches = [0]

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/images") and request.method == "POST":
            return httpx.Response(201, json={"upload_id": IMAGE_ID, "upload": {
                "url": "http://store/bucket", "fields": {"key": f"incoming/{IMAGE_ID}"}},
                "confirm": STATE + "/confirm", "state": STATE})
        if request.url.path == STATE + "/confirm":
            return httpx.Response(202, json={"state": "confirmed"})
        if request.url.path == STATE:
            return httpx.Response(200, json={"state": "confirmed"})
        searches[0] += 1
        images = ([{"id": IMAGE_ID, "links": image_links(edge_demo.DEMO_SKU, IMAGE_ID)}]
                  if searches[0] > searches_before_hit else [])
        return httpx.Response(200, json={"hits": [{"sku": edge_demo.DEMO_SKU, "images": images}]})

    return httpx.MockTransport(answer)


def test_the_photo_goes_to_the_store_is_confirmed_and_its_links_are_printed(monkeypatch):
    # Given an edge that shows the image in search on the second search, and a store taking the POST
    requests: list[str] = []
    client = edge_demo._Client("http://edge")
    client.http = httpx.Client(base_url="http://edge", transport=edge(requests, searches_before_hit=1))
    posted: list[bytes] = []

    def store_post(url: str, *, data: dict, files: dict, timeout: float) -> httpx.Response:
        posted.append(files["file"][1])
        return httpx.Response(204)

    monkeypatch.setattr(edge_demo.httpx, "post", store_post)
    monkeypatch.setattr(edge_demo.time, "sleep", lambda _s: None)
    lines: list[str] = []

    # When the demo gives the product its photo
    edge_demo._photo(client, "admin-token", lines.append)

    # Then a JPEG went to the store, the upload was confirmed, and each link is one printed line
    assert Image.open(io.BytesIO(posted[0])).format == "JPEG"
    assert f"POST {STATE}/confirm" in requests
    links = [line for line in lines if "http://edge/v1/products/" in line]
    assert len(links) == len(image_links(edge_demo.DEMO_SKU, IMAGE_ID)), json.dumps(lines)


def test_a_store_that_does_not_answer_stops_the_demo_saying_how_to_start_it(monkeypatch):
    client = edge_demo._Client("http://edge")
    client.http = httpx.Client(base_url="http://edge", transport=edge([], searches_before_hit=0))

    def refused(*_a: object, **_k: object) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(edge_demo.httpx, "post", refused)

    with pytest.raises(edge_demo.EdgeDemoError, match="shopflow stack up"):
        edge_demo._photo(client, "admin-token", lambda _line: None)


class StandInMailbox:
    """mailpit's reading side: the welcome at once, the order's e-mail from the third look on."""

    def __init__(self, mails: list[ReceivedMail]) -> None:
        self.mails, self.looks = mails, 0

    def __call__(self, _settings: Settings) -> StandInMailbox:
        return self

    def __enter__(self) -> StandInMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def to(self, address: str) -> list[ReceivedMail]:
        self.looks += 1
        arrived = self.mails if self.looks >= 3 else self.mails[-1:]
        return [m for m in arrived if address in m.to]


def mail(subject: str, text: str, to: str = "demo@example.test") -> ReceivedMail:
    return ReceivedMail(mail_id="m", message_id="<m@shopflow>", sender="no-reply@shopflow.local", to=[to],
                        subject=subject, text=text, html="<p>…</p>")


def test_the_order_email_is_printed_once_it_arrives_not_the_welcome(monkeypatch, tmp_path):
    # Given a mailbox holding the welcome, and the order's e-mail only on the third look
    order_id = "ord-7"
    mailbox = StandInMailbox([mail(f"Your order {order_id} is confirmed", f"\nHello Demo,\nOrder {order_id} ..."),
                              mail("Welcome to ShopFlow, Demo", "Welcome!")])
    monkeypatch.setattr(mail_server, "Mailbox", mailbox)
    monkeypatch.setattr(edge_demo.time, "sleep", lambda _s: None)
    lines: list[str] = []

    # When the demo reads the customer's e-mail
    settings = demo_settings(tmp_path)
    edge_demo._email(settings, "demo@example.test", order_id, lines.append)

    # Then it waited for the order's e-mail and printed its subject and first line of text
    assert mailbox.looks == 3
    assert lines == ['7. e-mail to demo@example.test: "Your order ord-7 is confirmed" '
                     f"(mailpit, port {settings.mail_api_port})", "   Hello Demo,"]


def test_no_order_email_in_time_stops_the_demo_naming_the_processes(monkeypatch, tmp_path):
    monkeypatch.setattr(mail_server, "Mailbox", StandInMailbox([mail("Welcome to ShopFlow, Demo", "Welcome!")]))

    with pytest.raises(edge_demo.EdgeDemoError, match="shopflow notifier"):
        edge_demo._email(demo_settings(tmp_path), "demo@example.test", "ord-7", lambda _line: None, timeout_s=0)


def demo_settings(home) -> Settings:
    return Settings(_env_file=None, home=home, postgres_password="unused")  # type: ignore[call-arg]
