"""The edge demo's product photo (shopflow/edge_demo.py) against a stand-in edge and store: the presigned
POST carries a real JPEG, the confirm follows, and the search hit's image links are printed."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from PIL import Image

from shopflow import edge_demo
from shopflow.images import image_links

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
