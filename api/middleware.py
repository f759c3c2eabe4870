"""A cap on request body size, enforced before any route has the body.

Pure ASGI (BaseHTTPMiddleware would buffer and slow every request). A declared ``Content-Length``
over the cap is answered 413 at once, without reading a byte; a chunked body is counted as it
arrives and refused as soon as it passes the cap: the error raised from ``receive`` is an
``HTTPException``, which FastAPI passes through its body parsing to the app's error handler, so
both paths answer the same JSON. An oversize payload never reaches a route, nor a topic.
(FastAPI's own ``max_body_size`` answers a plain-text "Content Too Large"; this says the limit.)
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_detail(max_bytes: int) -> str:
    return f"the request body is larger than the {max_bytes} bytes this API accepts"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = json.dumps({"detail": too_large_detail(self.max_bytes)}).encode()
            await send({"type": "http.response.start", "status": 413, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return

        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, too_large_detail(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)
