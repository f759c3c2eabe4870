"""Accounts: sign up, log in, refresh, log out (``/v1/auth``).

Sign-up always makes a customer; admins are made from the command line (``api.users.create_admin``),
other roles granted there (``shopflow users grant``). Login and refresh read the user's roles and
permissions from PostgreSQL into the access token. Refresh tokens rotate: using one revokes it, so a
stolen refresh token works at most once and a replayed one is refused. Log out revokes the access token
and, when given, the refresh token.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse

from shopflow import access
from shopflow.api import users
from shopflow.api.dependencies import CurrentUser, DbDep, EdgeDep, OptionalIdempotencyKey, anonymous_limit, unauthorized
from shopflow.api.errors import errors
from shopflow.api.idempotency import fingerprint
from shopflow.api.schemas import LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, TokenResponse, UserPublic
from shopflow.api.security import TokenError, TokenPair, TokenType

router = APIRouter(prefix="/v1/auth", tags=["auth"])


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post(
    "/register", status_code=status.HTTP_201_CREATED, response_model=UserPublic,
    dependencies=[Depends(anonymous_limit)],
    responses={201: {"headers": {"Location": {"description": "The new account's profile.",
                                              "schema": {"type": "string"}}}},
               **errors(400, 409, 413, 422, 429, 503)},
)
async def register(body: RegisterRequest, request: Request, edge: EdgeDep,
                   idempotency_key: OptionalIdempotencyKey = None) -> Response:
    """Create a customer account (UserRegistered goes out through the outbox in the same transaction)."""

    async def handle() -> Response:
        async with edge.pool.acquire() as conn:
            try:
                user = await users.register(conn, edge.codec, email=body.email, password=body.password,
                                            display_name=body.display_name)
            except users.EmailTaken as exc:
                raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return JSONResponse(user.model_dump(mode="json"), status.HTTP_201_CREATED,
                            headers={"Location": "/v1/users/me"})

    if idempotency_key is None:
        return await handle()
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    return await edge.idempotency.run("anonymous", idempotency_key, fp, handle)


@router.post("/login", response_model=TokenResponse, dependencies=[Depends(anonymous_limit)],
             responses=errors(400, 401, 413, 422, 429, 503))
async def login(body: LoginRequest, conn: DbDep, edge: EdgeDep) -> TokenResponse:
    """Exchange e-mail and password for an access token and a refresh token."""
    user = await access.authenticate(conn, body.email, body.password)
    if user is None:
        raise unauthorized("wrong e-mail or password", invalid=False)
    return _tokens(edge.tokens.issue(user.user_id, user.roles, user.permissions))


@router.post("/refresh", response_model=TokenResponse, dependencies=[Depends(anonymous_limit)],
             responses=errors(400, 401, 413, 422, 429, 503))
async def refresh(body: RefreshRequest, conn: DbDep, edge: EdgeDep) -> TokenResponse:
    """A new token pair for a refresh token; the refresh token given is spent (rotation)."""
    try:
        claims = edge.tokens.verify(body.refresh_token, TokenType.REFRESH)
    except TokenError as exc:
        raise unauthorized(str(exc)) from None
    if not await edge.revoke(claims):
        raise unauthorized("the refresh token was already used or revoked; log in again")
    user = await access.principal_of(conn, claims.user_id)
    if user is None:
        raise unauthorized("the account no longer exists")
    # Roles and permissions are read again, so a grant or revoke takes effect at the next refresh.
    return _tokens(edge.tokens.issue(user.user_id, user.roles, user.permissions))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 413, 422, 429, 503))
async def logout(user: CurrentUser, edge: EdgeDep, body: LogoutRequest | None = None) -> Response:
    """Revoke the access token used for this call, and the refresh token when one is given."""
    if body is not None and body.refresh_token is not None:
        try:
            refresh_claims = edge.tokens.verify(body.refresh_token, TokenType.REFRESH)
        except TokenError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"refresh_token: {exc}") from None
        if refresh_claims.user_id != user.user_id:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "refresh_token belongs to another account")
        await edge.revoke(refresh_claims)
    await edge.revoke(user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
