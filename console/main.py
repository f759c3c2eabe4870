"""The ops console's app: ``create_app(settings)``, and ``serve`` behind ``shopflow ops``.

Server-rendered pages (console/templates, one local CSS file, no script from anywhere) for the people
who run ShopFlow, each also JSON (``console.pages``). Its own process and port (``settings.ops_port``),
registered with the stack's Prometheus like the edge. The lifespan opens what pages share
(``console.resources``). Every answer carries the security headers (a CSP allowing this origin
only, no framing, no referrer elsewhere) and pages are never cached.

    shopflow ops            # uvicorn on settings.host:settings.ops_port; sign in at /login
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from shopflow.api import metrics as edge_metrics
from shopflow.console import auth
from shopflow.console.pages import HERE, error_page, wants_json
from shopflow.console.resources import open_console
from shopflow.console.routers import routers
from shopflow.metrics import register_target
from shopflow.settings import Settings, get_settings

SECURITY_HEADERS = {
    # No inline script or style anywhere: sparklines are SVG elements, styles live in console.css.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}


async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Every answer gets the headers; everything but static files gets ``no-store`` too."""
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    if not request.url.path.startswith("/static/"):
        response.headers["cache-control"] = "no-store"
    return response


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with open_console(app.state.settings) as console:
        app.state.console = console
        yield


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(auth.LoginRequired)
    async def login_required(request: Request, exc: auth.LoginRequired) -> Response:
        if wants_json(request):
            return error_page(request, 401, "not signed in: POST e-mail, password and the sign-in token to /login "
                                            "(GET /login sets that token's cookie), then send the session cookie")
        return RedirectResponse(auth.login_url(request), 303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error_page(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> Response:
        what = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return error_page(request, 422, f"bad input: {what}")


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="ShopFlow ops console", version="1.0.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings or get_settings()
    _install_errors(app)
    app.middleware("http")(security_headers)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(auth.router)
    for router in routers():
        app.include_router(router)
    app.include_router(edge_metrics.router)  # /metrics for the local Prometheus only, as the edge's

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(settings: Settings | None = None, host: str | None = None, port: int | None = None) -> None:
    """``shopflow ops``: serve the console with uvicorn, a Prometheus target like every ShopFlow process."""
    import uvicorn

    settings = settings or get_settings()
    host, port = host or settings.host, port or settings.ops_port
    register_target(settings, "ops", port, host=host)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
