"""One error shape for the whole edge, and the handlers that make every failure a clear 4xx or 503.

Every error body is ``{"detail": "<what is wrong>"}``, or for invalid input one entry per field
(``loc``, ``msg``, ``type``; the offending input itself is not echoed back, it may be a password).
A backing service that is down (PostgreSQL, Redis, the registry, Kafka) is a 503 with
``Retry-After``, never a 500 with a stack trace. A method a path does not have is a 405 whose ``Allow``
lists every method of that path (Starlette's names only the first route that matched the path).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg
import redis.exceptions
from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shopflow.api.producer import ProduceError
from shopflow.api.schemas import ErrorResponse
from shopflow.schemas.registry import RegistryError

log = logging.getLogger(__name__)

_DESCRIPTIONS = {
    400: "The request is malformed: a body that is not UTF-8 JSON, a `cursor` this API did not issue (cursors "
         "are opaque: pass `next_cursor` as given), a refresh token that is not a valid one.",
    401: "No access token, or one that is expired, tampered with or revoked.",
    403: "Signed in, but without the permission this needs (`detail` names it).",
    404: "No such resource visible to the caller (a customer sees only their own orders: another customer's "
         "order is 404 too; an admin sees every order).",
    409: "Conflicts with the current state (e-mail taken, order already final, a request with the same "
         "`Idempotency-Key` still in flight: retry after `Retry-After`).",
    413: "The body is larger than the edge accepts.",
    422: "The input is refused. Invalid fields: `detail` lists each field and what is wrong. A rule the schema "
         "cannot state: `detail` is a sentence naming it: a sku that is not in the catalog or not sold, an "
         "unknown category, `price_min` above `price_max`, or an `Idempotency-Key` this caller already used for "
         "another request (another route or body; keys are scoped to the caller).",
    429: "Too many requests; retry after Retry-After seconds.",
    503: "A backing service (Kafka, PostgreSQL, Redis, the schema registry) is unavailable; retry.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def errors(*codes: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` entries for these error codes, all with the ``ErrorResponse`` shape."""
    out: dict[int | str, dict] = {}
    for code in codes:
        entry: dict = {"model": ErrorResponse, "description": _DESCRIPTIONS[code]}
        if code in (429, 503):
            entry["headers"] = _RETRY_AFTER
        out[code] = entry
    return out


def _unavailable(what: str) -> JSONResponse:
    return JSONResponse({"detail": f"{what} is unavailable right now; retry shortly"},
                        status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})


async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
    issues = [{"loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
               "msg": e.get("msg", "invalid"), "type": e.get("type", "value_error")} for e in exc.errors()]
    return JSONResponse({"detail": issues}, status.HTTP_422_UNPROCESSABLE_CONTENT)


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at the request's path (HEAD with GET, as Starlette serves it).

    Asked of the routes themselves (``matches``, as routing does), so included routers count too."""
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.routes)]


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return await http_exception_handler(request, exc)


async def _produce_failed(_request: Request, exc: ProduceError) -> JSONResponse:
    log.warning("produce failed: %s", exc)
    return JSONResponse({"detail": f"the command was not recorded ({exc}); retry with the same Idempotency-Key"},
                        status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})


def _down(what: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s unavailable: %r", what, exc)
        return _unavailable(what)

    return handler


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ProduceError, _produce_failed)  # type: ignore[arg-type]
    for exc in (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.TooManyConnectionsError):
        app.add_exception_handler(exc, _down("the database"))
    for exc in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        app.add_exception_handler(exc, _down("the session and rate-limit store"))
    app.add_exception_handler(RegistryError, _down("the schema registry"))
    # Connection refused while a pool opens a new connection, and the like.
    app.add_exception_handler(OSError, _down("a backing service"))
