"""Who may see and do what in the console: sign-in, sessions, permissions and CSRF, as FastAPI dependencies.

- ``OpsViewer``: a signed-in user with ``ops.view``. Not signed in: a browser is sent to
  ``/login?next=...``, a JSON caller gets 401; signed in without the permission: 403.
- ``OpsActor``: ``ops.act`` and the session's CSRF token, from the form field ``csrf_token`` or the
  header ``X-CSRF-Token`` (403 "missing or wrong CSRF token" otherwise). Every action also writes an
  ``audit`` row (``shopflow.access.audit``), done by the action's route.
- ``csrf_token(request)``: the token a template puts in its forms.

Sign-in is a form (``/login``) guarded against login CSRF by a double-submit token in a short-lived
pre-session cookie, and rate limited per client address (``api.ratelimit``). A session's permissions
are read again from PostgreSQL on each request, so a revoked role takes effect at once.
Forms are read with ``form_fields`` (URL-encoded bodies; there is no multipart parser here).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response

from shopflow.access import Permission, Principal, audit, authenticate, principal_of
from shopflow.console.resources import ConsoleDep
from shopflow.console.sessions import COOKIE, LOGIN_COOKIE, Session, new_token

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
MAX_FORM_BYTES = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
LOGIN_COOKIE_TTL_S = 3600
WRONG_CSRF = "missing or wrong CSRF token: reload the page and submit again (scripts send the session's " \
             "token, from the sign-in's JSON answer, in the X-CSRF-Token header)"


class LoginRequired(Exception):
    """No live session: a browser is sent to the sign-in page, a script gets 401 (``console.main``)."""


def csrf_token(request: Request) -> str:
    """The session's CSRF token for a template's forms ('' before sign-in)."""
    session: Session | None = getattr(request.state, "session", None)
    return session.csrf_token if session else ""


async def form_fields(request: Request) -> Mapping[str, str]:
    """The URL-encoded form of a POST, read once per request. 413 past ``MAX_FORM_BYTES`` (by its
    Content-Length, else while reading); 415 for a body of another type (multipart included: no form
    here uploads a file). No body, or a JSON body (a script's action, its CSRF token in the header),
    has no form fields."""
    cached: Mapping[str, str] | None = getattr(request.state, "form_fields", None)
    if cached is not None:
        return cached
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    too_large = HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                              f"a console form is at most {MAX_FORM_BYTES} bytes: send fewer or shorter fields")
    fields: dict[str, str] = {}
    if kind == FORM_TYPE:
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:  # chunked, or a Content-Length that lied
                raise too_large
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif kind != "application/json" and (kind or (declared.isdigit() and int(declared) > 0)):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"send the form as {FORM_TYPE} (got {kind or 'a body with no Content-Type'})")
    request.state.form_fields = fields
    return fields


async def signed_in(request: Request, console: ConsoleDep) -> Principal:
    """The session's user with their permissions as PostgreSQL has them now; ``LoginRequired`` without one."""
    session = await console.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        raise LoginRequired
    async with console.pool.acquire() as conn:
        principal = await principal_of(conn, session.user_id)
    if principal is None:  # the account is gone
        await console.sessions.delete(session.id)
        raise LoginRequired
    request.state.session, request.state.principal = session, principal
    return principal


SignedIn = Annotated[Principal, Depends(signed_in)]


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    async def allowed(principal: SignedIn) -> Principal:
        if not principal.can(permission):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this needs the {permission} permission; an admin grants it with "
                                f"`shopflow users grant {principal.email} ops`")
        return principal

    return allowed


async def check_csrf(request: Request) -> None:
    session: Session = request.state.session
    sent = request.headers.get(CSRF_HEADER) or (await form_fields(request)).get(CSRF_FIELD, "")
    if not secrets.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, WRONG_CSRF)


async def ops_actor(request: Request, principal: Annotated[Principal, Depends(require(Permission.OPS_ACT))]
                    ) -> Principal:
    await check_csrf(request)
    return principal


OpsViewer = Annotated[Principal, Depends(require(Permission.OPS_VIEW))]
OpsActor = Annotated[Principal, Depends(ops_actor)]


# -- sign-in and sign-out ------------------------------------------------------------------------------

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path of this console: never another site (an open redirect) nor a scheme-relative //host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def _login_form(request: Request, next_path: str, error: str = "", status_code: int = 200) -> Response:
    from shopflow.console.pages import TEMPLATES  # pages imports this module for csrf_token

    token = request.cookies.get(LOGIN_COOKIE) or new_token()
    response = TEMPLATES.TemplateResponse(
        request, "login.html", {"login_csrf": token, "next": next_path, "error": error, "principal": None},
        status_code=status_code)
    _set_cookie(response, request, LOGIN_COOKIE, token, LOGIN_COOKIE_TTL_S)
    return response


def login_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?" + urlencode({"next": here})


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, next: str = "/") -> Response:
    return _login_form(request, _safe_next(next))


@router.post("/login", include_in_schema=False)
async def login(request: Request, console: ConsoleDep) -> Response:
    from shopflow.console.pages import error_page, wants_json

    form = await form_fields(request)
    next_path = _safe_next(form.get("next"))
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not secrets.compare_digest(form.get(CSRF_FIELD, "").encode(), expected.encode()):
        return error_page(request, status.HTTP_403_FORBIDDEN, "missing or wrong sign-in token: open /login "
                          "again (cookies must be on) and sign in from that page")
    address = request.client.host if request.client else "unknown"
    decision = await console.login_limit.hit(console.redis, address)
    if decision is not None and not decision.allowed:
        return error_page(request, status.HTTP_429_TOO_MANY_REQUESTS,
                          f"too many sign-in attempts from {address}; retry in {decision.retry_after_s}s",
                          headers={"Retry-After": str(decision.retry_after_s)})
    email = form.get("email", "").strip()
    async with console.pool.acquire() as conn:
        principal = await authenticate(conn, email, form.get("password", "")) if email else None
        await audit(conn, actor=principal or f"unknown:{email.lower()[:200]}",
                    action="ops.login" if principal else "ops.login.failed", target="console",
                    detail={"address": address})
    if principal is None:
        if wants_json(request):
            return JSONResponse({"detail": "wrong e-mail or password"}, status.HTTP_401_UNAUTHORIZED)
        return _login_form(request, next_path, "Wrong e-mail or password.", status.HTTP_401_UNAUTHORIZED)
    old = request.cookies.get(COOKIE)
    if old:  # rotated: whatever id the browser had before is dead now
        await console.sessions.delete(old)
    session = await console.sessions.create(principal.user_id, principal.email)
    response: Response
    if wants_json(request):
        response = JSONResponse({"email": principal.email, "roles": sorted(principal.roles),
                                 "permissions": sorted(principal.permissions), "csrf_token": session.csrf_token})
    else:
        response = RedirectResponse(next_path, status.HTTP_303_SEE_OTHER)
    _set_cookie(response, request, COOKIE, session.id, console.settings.ops_session_ttl_s)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, console: ConsoleDep, principal: SignedIn) -> Response:
    await check_csrf(request)
    session: Session = request.state.session
    await console.sessions.delete(session.id)
    async with console.pool.acquire() as conn:
        await audit(conn, actor=principal, action="ops.logout", target="console")
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
