"""The edge's metrics: requests by route template and status, their latency, and ``GET /metrics``.

``RequestMetrics`` is pure ASGI (as ``BodySizeLimit``), outermost, so it also counts what is refused
before routing. The route label is the matched route's template (``/v1/orders/{order_id}``), never
the raw path, whose ids would make a series per order; a request no route took is ``unmatched``.
The method label is one of HTTP's usual methods or ``other``: a client may send any token as a method.
The counters of commands produced, idempotent replays and rate-limited requests are incremented
where those happen (``api.producer``, ``api.idempotency``, ``api.ratelimit``).

``/metrics`` answers only a direct caller on the edge's own host (loopback, or the address the edge is
bound to): the stack's Prometheus runs there and needs no token, while anything else (another host,
or a request that came through a proxy, which says so in ``Forwarded`` or ``X-Forwarded-For``) gets
403. With several uvicorn workers
the edge runs prometheus_client's multiprocess mode (``api.main.serve``): whichever worker answers
``/metrics`` answers for all of them, so the one registered target is the whole edge.
"""

from __future__ import annotations

import ipaddress
import time

from fastapi import APIRouter, HTTPException, Request, Response, status
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopflow.metrics import CONTENT_TYPE_LATEST, LATENCY_BUCKETS, Children, exposition

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"

REQUESTS = Counter("shopflow_http_requests_total", "HTTP requests the edge answered, by route template, "
                   "method and status.", ["route", "method", "status"])
REQUEST_SECONDS = Histogram("shopflow_http_request_duration_seconds", "Time from a request's arrival to the "
                            "end of its response, by route template and method.", ["route", "method"],
                            buckets=LATENCY_BUCKETS)
COMMANDS_PRODUCED = Counter("shopflow_commands_produced_total", "Commands the edge produced and the broker "
                            "acknowledged (acks=all), by topic.", ["topic"])
IDEMPOTENT_REPLAYS = Counter("shopflow_idempotent_replays_total", "Requests answered with the stored response "
                             "of an earlier request with the same Idempotency-Key.")
RATE_LIMITED = Counter("shopflow_rate_limited_total", "Requests refused with 429, by limiter "
                       "(user: signed in; anonymous: per address, before sign-in).", ["limiter"])

_requests = Children(REQUESTS)
_seconds = Children(REQUEST_SECONDS)


class RequestMetrics:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500  # what the client gets when the app raises before answering

        async def send_counted(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            # The router leaves the route it matched in the scope.
            template = getattr(route, "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else OTHER_METHOD
            _seconds[(template, method)].observe(time.perf_counter() - start)
            _requests[(template, method, str(status_code))].inc()


_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

router = APIRouter()


def _from_this_host(request: Request) -> bool:
    """Loopback, or the address the edge is bound to (what a local caller comes from when it dials that)."""
    client = request.client.host if request.client else ""
    server = request.scope.get("server") or ("",)
    try:
        return ipaddress.ip_address(client).is_loopback or client == server[0]
    except ValueError:  # not an address (a test client's name)
        return False


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus's scrape of this edge: loopback callers only, not through a proxy."""
    if not _from_this_host(request) or any(h in request.headers for h in _PROXY_HEADERS):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "/metrics answers the local Prometheus only: scrape it "
                            "from the edge's host, directly (not through a proxy)")
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
