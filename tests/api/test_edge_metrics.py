"""The edge's metrics after real requests: route templates (never raw paths), statuses, latency,
commands produced, idempotent replays, rate-limited requests; who may scrape ``/metrics``; and a
real ``shopflow api`` process, alone and with several uvicorn workers, registered for Prometheus.
Two fast ones need no server: invented methods are one label value, and the registered address is
the one the edge binds."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from metrics_lint import promtool_check, total
from pydantic import SecretStr

from shopflow.api.metrics import RequestMetrics
from shopflow.launch import ShopflowProcess, edge_health
from shopflow.metrics import exposition
from shopflow.settings import Settings, get_settings
from shopflow.topologies.catalog import ORDER_COMMANDS

integration = pytest.mark.integration

ORDER_ROUTE = "/v1/orders/{order_id}"


def _order(skus: dict[str, str]) -> dict:
    return {"lines": [{"sku": skus["A"], "quantity": 1}], "payment_token": "tok"}


async def _scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


@integration
async def test_requests_are_counted_by_route_template_and_status(client, new_account, skus):
    # Given a customer and the counters as they are
    acct = await new_account()
    before = await _scrape(client)

    # When they place an order, read it, and ask for one that does not exist and a path no route has
    placed = await client.post("/v1/orders", json=_order(skus),
                               headers={**acct.auth, "Idempotency-Key": str(uuid.uuid4())})
    order_id = placed.json()["order_id"]
    assert (await client.get(f"/v1/orders/{order_id}", headers=acct.auth)).status_code == 200
    missing = str(uuid.uuid4())
    assert (await client.get(f"/v1/orders/{missing}", headers=acct.auth)).status_code == 404
    assert (await client.get(f"/v1/no-such-thing/{missing}")).status_code == 404
    after = await _scrape(client)

    # Then each is counted under its route's template, with its status
    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("shopflow_http_requests_total", route="/v1/orders", method="POST", status="202") == 1
    assert delta("shopflow_http_requests_total", route=ORDER_ROUTE, method="GET", status="200") == 1
    assert delta("shopflow_http_requests_total", route=ORDER_ROUTE, method="GET", status="404") == 1
    assert delta("shopflow_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert delta("shopflow_http_request_duration_seconds_count", route=ORDER_ROUTE, method="GET") == 2
    assert delta("shopflow_commands_produced_total", topic=ORDER_COMMANDS.name) == 1
    # and no id ever becomes a label
    assert order_id not in after and missing not in after
    promtool_check(after)


@integration
async def test_a_replayed_command_is_counted_once_produced(client, new_account, skus):
    acct = await new_account()
    headers = {**acct.auth, "Idempotency-Key": str(uuid.uuid4())}
    before = await _scrape(client)

    first = await client.post("/v1/orders", json=_order(skus), headers=headers)
    replay = await client.post("/v1/orders", json=_order(skus), headers=headers)

    after = await _scrape(client)
    assert (first.status_code, replay.headers.get("idempotent-replayed")) == (202, "true")
    assert total(after, "shopflow_idempotent_replays_total") - total(before, "shopflow_idempotent_replays_total") == 1


@integration
async def test_refused_requests_are_counted_by_limiter(api_settings):
    from shopflow.api.main import create_app

    limited = create_app(api_settings.model_copy(update={"rate_limit_anonymous": 1, "rate_limit_window_s": 30}))
    # An address of its own on loopback: the anonymous limit counts per address, and /metrics answers it.
    address = f"127.0.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 2}"
    async with (limited.router.lifespan_context(limited),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=limited, client=(address, 1)),
                                  base_url="http://edge") as c):
        before = await _scrape(c)
        login = {"email": f"nobody.{uuid.uuid4().hex[:8]}@example.test", "password": "hunter22!"}
        codes = [(await c.post("/v1/auth/login", json=login)).status_code for _ in range(2)]
        after = await _scrape(c)

    assert codes[1] == 429
    assert (total(after, "shopflow_rate_limited_total", limiter="anonymous")
            - total(before, "shopflow_rate_limited_total", limiter="anonymous")) == 1
    assert total(after, "shopflow_http_requests_total", route="/v1/auth/login", status="429") >= 1


@integration
@pytest.mark.parametrize(("address", "headers"), [
    ("203.0.113.9", {}),  # another host
    ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}),  # through a proxy on this host
    ("127.0.0.1", {"Forwarded": "for=203.0.113.9"}),
])
async def test_metrics_answer_only_a_direct_caller_on_this_host(app, address, headers):
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as c:
        refused = await c.get("/metrics", headers=headers)

    assert refused.status_code == 403
    assert "local Prometheus only" in refused.json()["detail"]


@integration
def test_metrics_are_not_part_of_the_public_api(app):
    assert "/metrics" not in app.openapi()["paths"]


async def test_a_method_http_does_not_define_is_counted_as_other_not_as_a_series_of_its_own():
    # Given the request counter in front of an app that refuses everything
    async def refuse(scope, receive, send):
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def others(text: str) -> float:
        return total(text, "shopflow_http_requests_total", route="unmatched", method="other", status="405")

    before = exposition().decode()
    # When a client invents methods
    transport = httpx.ASGITransport(app=RequestMetrics(refuse))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as c:
        for method in ("BREW", "PROPFIND", "X-INVENTED-1"):
            await c.request(method, "/")
        await c.request("DELETE", "/")
    after = exposition().decode()

    # Then they are all one label value, and the methods HTTP defines keep theirs
    assert others(after) - others(before) == 3
    assert not any(invented in after for invented in ("BREW", "PROPFIND", "X-INVENTED-1"))
    assert total(after, "shopflow_http_requests_total", route="unmatched", method="DELETE", status="405") >= 1


def test_the_edge_registers_the_host_it_binds_not_the_configured_one(tmp_path: Path, monkeypatch):
    import uvicorn

    from shopflow.api import main

    registered: list[tuple] = []
    monkeypatch.setattr(main, "register_target", lambda *args, **kw: registered.append((args, kw)))
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kw: None)
    settings = get_settings().model_copy(update={"home": tmp_path, "host": "127.0.0.1",
                                                 "jwt_secret": SecretStr("s" * 48)})

    main.serve(settings, host="127.0.0.2", port=8123)

    assert registered == [((settings, "edge", 8123), {"host": "127.0.0.2"})]


# --- a real `shopflow api` process ------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def edge_process(stack: Settings, tmp_path: Path) -> Iterator:
    """``edge_process(workers)``: a ready ``shopflow api`` on a free port; its port and process."""
    started: list[ShopflowProcess] = []

    def start(workers: int = 1) -> tuple[int, ShopflowProcess]:
        port = _free_port()
        proc = ShopflowProcess(f"edge :{port}", ["api", "--port", str(port), "--workers", str(workers)],
                               tmp_path / f"edge-{port}.log", health=edge_health(stack, port))
        started.append(proc)
        proc.start()
        return port, proc

    yield start
    for proc in started:
        proc.close()


def _target_file(settings: Settings, pid: int | None) -> Path:
    return settings.targets_dir / f"edge-{pid}.json"


@integration
def test_a_running_edge_registers_its_port_and_unregisters_when_stopped(stack: Settings, edge_process):
    port, proc = edge_process()
    target = _target_file(stack, proc.pid)

    assert json.loads(target.read_text())[0]["targets"] == [f"{stack.host}:{port}"]
    text = httpx.get(f"http://{stack.host}:{port}/metrics", timeout=5).text
    assert total(text, "shopflow_http_requests_total", route="/v1/health", status="200") >= 1
    promtool_check(text)

    proc.stop()
    assert not target.exists()


@integration
def test_with_several_workers_any_of_them_answers_for_all(stack: Settings, edge_process):
    # Given an edge of 3 uvicorn workers, sharing its counts (prometheus_client's multiprocess mode)
    port, proc = edge_process(workers=3)
    base = f"http://{stack.host}:{port}"
    with httpx.Client(base_url=base, timeout=5) as c:
        before = total(c.get("/metrics").text, "shopflow_http_requests_total", route="/v1/health")
        # When 30 requests are spread over the workers (a new connection each: the kernel picks a worker)
        for _ in range(30):
            assert httpx.get(f"{base}/v1/health", timeout=5).status_code == 200
        # Then every scrape, whichever worker answers, counts all of them
        scrapes = [c.get("/metrics", headers={"Connection": "close"}).text for _ in range(5)]
    for text in scrapes:
        assert total(text, "shopflow_http_requests_total", route="/v1/health") - before == 30
        promtool_check(text)
    # and the edge is one Prometheus target, the supervising process's
    assert _target_file(stack, proc.pid).exists()
