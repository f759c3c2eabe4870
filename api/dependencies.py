"""What routes ask for, as ``Annotated`` aliases: the caller, the settings, the producer, PostgreSQL,
Redis, the catalog repository and the product search index.

``CurrentUser`` verifies the bearer access token, and in one Redis call checks that its ``jti`` is not
revoked and counts the request against the user's rate limit (429 + ``Retry-After``).
``require(permission)`` adds a permission check (403); ``AdminUser`` is
``require(Permission.SHOP_ADMIN)``. Permissions come from the token (``api.security``): no database
call. Everything shared lives on ``app.state.edge`` (``Edge``), opened by the app's lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import httpx
from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from shopflow.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from shopflow.api.idempotency import KEY_PATTERN, IdempotencyStore
from shopflow.api.orders_store import Markers, OrderNotifications
from shopflow.api.prices import PriceBook
from shopflow.api.producer import CommandProducer
from shopflow.api.ratelimit import FixedWindowLimiter, RateDecision
from shopflow.api.security import Claims, Permission, TokenError, TokenService, TokenType
from shopflow.catalog import Catalog
from shopflow.catalog.search_index import ProductSearch
from shopflow.schemas.codec import AvroCodec
from shopflow.settings import Settings
from shopflow.topologies.catalog import CART_COMMANDS, CATALOG_PRODUCTS, FILES, ORDER_COMMANDS, STOCK_REQUESTS, Topic

REVOKED_PREFIX = "shopflow:jwt:revoked"


@dataclass(frozen=True)
class EdgeTopics:
    """The topics the edge produces commands to: the catalog's, unless a benchmark gives its own."""

    order_commands: Topic = ORDER_COMMANDS
    stock_requests: Topic = STOCK_REQUESTS
    # Not produced to directly: catalog writes name it as their outbox rows' aggregatetype.
    catalog_products: Topic = CATALOG_PRODUCTS
    cart_commands: Topic = CART_COMMANDS
    # Not produced to directly either: product image events go through the catalog's outbox.
    files: Topic = FILES


@dataclass
class Edge:
    """The edge's shared resources, one per app (opened and closed by ``api.main``'s lifespan)."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    codec: AvroCodec
    producer: CommandProducer
    tokens: TokenService
    user_limit: FixedWindowLimiter
    anonymous_limit: FixedWindowLimiter
    idempotency: IdempotencyStore
    markers: Markers
    notifications: OrderNotifications
    prices: PriceBook
    topics: EdgeTopics
    catalog: Catalog
    search: ProductSearch
    # HTTP to the Faust workers' table views (carts); opened by the lifespan.
    workers: httpx.AsyncClient | None = None

    @staticmethod
    def revoked_key(jti: str) -> str:
        return f"{REVOKED_PREFIX}:{jti}"

    async def revoke(self, claims: Claims) -> bool:
        """Revoke a token until it would expire anyway; False when it already was (SET NX: exactly one wins)."""
        ttl = max(1, claims.seconds_left() + 1)
        return bool(await self.redis.set(self.revoked_key(claims.jti), b"1", nx=True, ex=ttl))


async def get_edge(request: Request) -> Edge:
    # async, as every dependency here: FastAPI runs a plain `def` dependency in the thread pool, a
    # thread hop on every request.
    return request.app.state.edge


EdgeDep = Annotated[Edge, Depends(get_edge)]


async def get_settings(edge: EdgeDep) -> Settings:
    return edge.settings


async def get_producer(edge: EdgeDep) -> CommandProducer:
    return edge.producer


async def get_redis(edge: EdgeDep) -> Redis:
    return edge.redis


async def get_catalog(edge: EdgeDep) -> Catalog:
    return edge.catalog


async def get_search(edge: EdgeDep) -> ProductSearch:
    return edge.search


async def get_db(edge: EdgeDep) -> AsyncIterator[asyncpg.Connection]:
    async with edge.pool.acquire() as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(get_settings)]
ProducerDep = Annotated[CommandProducer, Depends(get_producer)]
RedisDep = Annotated[Redis, Depends(get_redis)]
DbDep = Annotated[asyncpg.Connection, Depends(get_db)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
SearchDep = Annotated[ProductSearch, Depends(get_search)]
IdempotencyKey = Annotated[str, Header(
    alias=IDEMPOTENCY_HEADER, pattern=KEY_PATTERN,
    description="A unique key per request (a UUID is the usual choice; 1 to 255 visible ASCII characters). "
                "Keys are scoped to the caller (the signed-in user), kept a day by default: a retry with the "
                "same key, route and body gets the first response (`Idempotent-Replayed: true`) instead of "
                "running again; the same key with another route or body is refused (422); a retry while the "
                "first is still running waits for it, then gets 409 with `Retry-After`. Only a 2xx is kept: "
                "after a 4xx or 5xx the key may be used again.",
)]
OptionalIdempotencyKey = Annotated[str | None, Header(
    alias=IDEMPOTENCY_HEADER, pattern=KEY_PATTERN,
    description="Optional here: with it, a retried sign-up gets the first response instead of 409. Sign-up "
                "keys are scoped to all anonymous callers together; otherwise as on every command (another "
                "route or body with the same key: 422; still running: 409).",
)]

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /v1/auth/login.")


def unauthorized(detail: str, *, invalid: bool = True) -> HTTPException:
    # RFC 6750: tell the client which scheme, and whether the token itself was the problem.
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


def too_many(decision: RateDecision) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"rate limit of {decision.limit} requests per window reached; retry in {decision.retry_after_s}s",
        headers={"Retry-After": str(decision.retry_after_s)},
    )


async def current_user(
    edge: EdgeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Claims:
    if credentials is None:
        raise unauthorized("missing bearer token: send 'Authorization: Bearer <access token>' "
                           "(get one from POST /v1/auth/login)", invalid=False)
    try:
        claims = edge.tokens.verify(credentials.credentials, TokenType.ACCESS)
    except TokenError as exc:
        raise unauthorized(str(exc)) from None
    # One Redis call: refused if the token was revoked, else counted against the user's limit.
    decision = await edge.user_limit.hit(edge.redis, claims.user_id, unless_exists=edge.revoked_key(claims.jti))
    if decision is None:
        raise unauthorized("the token was revoked (logged out); log in again")
    if not decision.allowed:
        raise too_many(decision)
    return claims


CurrentUser = Annotated[Claims, Depends(current_user)]


def forbidden(permission: Permission) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN,
                         f"this needs the {permission} permission; an admin can grant a role that has it "
                         "(shopflow users grant EMAIL ROLE), effective at your next token refresh")


def require(permission: Permission) -> Callable[[Claims], Awaitable[Claims]]:
    """A dependency: the caller's claims when their token carries ``permission`` (401 without a good
    token, 403 saying which permission otherwise)."""

    async def permitted(user: CurrentUser) -> Claims:
        if not user.can(permission):
            raise forbidden(permission)
        return user

    permitted.__name__ = f"require_{permission.value.replace('.', '_')}"
    return permitted


AdminUser = Annotated[Claims, Depends(require(Permission.SHOP_ADMIN))]


async def anonymous_limit(request: Request, edge: EdgeDep) -> None:
    """Rate limit for routes used before sign-in (register, login, refresh), per client address."""
    address = request.client.host if request.client else "unknown"
    decision = await edge.anonymous_limit.hit(edge.redis, address)
    assert decision is not None  # only a hit with ``unless_exists`` (a revoked token) gives None
    if not decision.allowed:
        raise too_many(decision)
