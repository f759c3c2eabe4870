"""Tokens of the edge: HS256 JWT access and refresh tokens carrying what the user may do.

An access token carries the user's ``roles`` and ``permissions`` (read from PostgreSQL at login and
refresh, ``shopflow.access``), so a request needs no database round trip to be authorised; a grant
or revoke takes effect at the next refresh or login. A refresh token carries neither: refreshing
reads them again. Tokens are stateless (the signature, the expiry and the type say whether one is
good) except for revocation: a logged-out access token or a used refresh token has its ``jti`` in
Redis until it would have expired anyway. Refresh tokens rotate: each is good once. The signing
secret comes from settings; when unset it is generated once into ``.shopflow/secrets.env``, as the
launcher does for the PostgreSQL password. Passwords: ``shopflow.access``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from shopflow.access import Permission, Role
from shopflow.settings import Settings, ensure_local_secret

# Role and Permission are shopflow.access's, named here too for the edge's modules and tests.
__all__ = ["Claims", "Permission", "Role", "TokenError", "TokenPair", "TokenService", "TokenType", "ensure_jwt_secret"]

ALGORITHM = "HS256"
ISSUER = "shopflow"
JWT_SECRET_VAR = "SHOPFLOW_JWT_SECRET"
# HS256 needs at least 256 bits of key (RFC 7518 3.2); shorter configured secrets are refused.
MIN_SECRET_BYTES = 32


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


class TokenError(Exception):
    """A token that must be refused; the message says why, for the 401's detail."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says."""

    user_id: str
    type: TokenType
    jti: str
    expires_at: int  # seconds since the epoch
    # Empty on a refresh token: refreshing reads them again from PostgreSQL.
    roles: frozenset[Role] = frozenset()
    permissions: frozenset[Permission] = frozenset()

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def seconds_left(self, now: float | None = None) -> int:
        return max(0, int(self.expires_at - (time.time() if now is None else now)))


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token is good for


class TokenService:
    # Verified tokens are remembered (a client sends the same one until it expires): decoding and
    # checking a JWT costs more CPU than the rest of the request's own work. Expiry is still checked on
    # every use; revocation is checked by the caller, in Redis, on every request.
    CACHE_SIZE = 10_000

    def __init__(self, secret: str, access_ttl_s: int, refresh_ttl_s: int):
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes ({JWT_SECRET_VAR})")
        self._secret = secret
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._verified: dict[str, Claims] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenService:
        if settings.jwt_secret is None:
            raise ValueError(f"no JWT secret: set {JWT_SECRET_VAR} or call ensure_jwt_secret(settings)")
        return cls(settings.jwt_secret.get_secret_value(), settings.access_token_ttl_s, settings.refresh_token_ttl_s)

    def _mint(self, user_id: str, kind: TokenType, ttl_s: int, now: float, **extra: Any) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER, "sub": user_id, "typ": kind.value,
            "jti": uuid.uuid4().hex, "iat": int(now), "exp": int(now) + ttl_s, **extra,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def issue(self, user_id: str, roles: Iterable[Role], permissions: Iterable[Permission],
              now: float | None = None) -> TokenPair:
        now = time.time() if now is None else now
        access = self._mint(user_id, TokenType.ACCESS, self.access_ttl_s, now,
                            roles=sorted(r.value for r in roles), permissions=sorted(p.value for p in permissions))
        return TokenPair(
            access_token=access,
            refresh_token=self._mint(user_id, TokenType.REFRESH, self.refresh_ttl_s, now),
            expires_in=self.access_ttl_s,
        )

    def verify(self, token: str, expected: TokenType) -> Claims:
        """The claims of a good token of the expected type; ``TokenError`` saying why otherwise."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._verified) >= self.CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[token] = claims
        elif claims.seconds_left() <= 0:
            del self._verified[token]
            raise TokenError("the token has expired; refresh it or log in again")
        if claims.type is not expected:
            raise TokenError(f"a {claims.type.value} token was given where a {expected.value} token is needed")
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            # The algorithm list is fixed: a token naming "none" or RS256 is refused, not trusted.
            raw = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired; refresh it or log in again") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature is not valid") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"the token is not valid: {exc}") from None
        try:
            kind = TokenType(str(raw.get("typ")))
        except ValueError:
            raise TokenError("the token has no known type (access or refresh)") from None
        roles: frozenset[Role] = frozenset()
        permissions: frozenset[Permission] = frozenset()
        if kind is TokenType.ACCESS:
            roles = _members(Role, raw.get("roles"), "roles")
            permissions = _members(Permission, raw.get("permissions"), "permissions")
        return Claims(user_id=str(raw["sub"]), type=kind, jti=str(raw["jti"]), expires_at=int(raw["exp"]),
                      roles=roles, permissions=permissions)


def _members(enum: type[Role] | type[Permission], names: object, claim: str) -> frozenset[Any]:
    """An access token's ``roles`` or ``permissions`` claim; a token made before there were roles, or
    naming one this code does not know, is refused (its holder refreshes or logs in again)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TokenError(f"the token carries no {claim} list; refresh it or log in again")
    try:
        return frozenset(enum(n) for n in names)
    except ValueError:
        raise TokenError(f"the token carries an unknown entry in {claim}; refresh it or log in again") from None


# -- the secret --------------------------------------------------------------------------------------


def ensure_jwt_secret(settings: Settings) -> Settings:
    """Settings with a JWT secret: the configured one, or one generated once into ``<home>/secrets.env``.

    Several edge processes may start at once (uvicorn workers): the file is locked while it is read
    and appended to, so they all end up with the same secret and accept each other's tokens.
    """
    if settings.jwt_secret is not None:
        return settings
    return settings.model_copy(update={"jwt_secret": ensure_local_secret(settings.home, JWT_SECRET_VAR, 48)})
