"""Who may do what: roles and permissions kept in PostgreSQL, passwords, and the audit log.

The role -> permission mapping lives in the ``roles``, ``permissions`` and ``role_permissions``
tables (seeded by migration 0007) and a user's roles in ``user_roles`` only; code asks for a
*permission* (``Permission.TAPS_READ``), never a role, so a new role is a row, not a release. The
edge reads a user's permissions at login and refresh and carries them in the access token; the ops
console reads them at login into its session. Every grant, revoke, tap and console action writes one
``audit_log`` row (``audit``).

Passwords are argon2id hashes; checking one always does the work of one verification, known
account or not, so timing tells nobody which e-mail addresses have accounts.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Role(StrEnum):
    """The roles the code knows; which permissions each has is data (``role_permissions``)."""

    CUSTOMER = "customer"
    ADMIN = "admin"
    OPS = "ops"
    DATA = "data"


class Permission(StrEnum):
    TAPS_READ = "taps.read"  # tap a topic, personal fields masked
    TAPS_UNMASK = "taps.unmask"  # tap with personal fields in the clear
    OPS_VIEW = "ops.view"  # see the ops console
    OPS_ACT = "ops.act"  # act in it (restart a connector, redrive dead letters)
    SHOP_ADMIN = "shop.admin"  # catalog, stock, every customer's orders


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in user and what they may do."""

    user_id: str
    email: str
    roles: frozenset[Role]
    permissions: frozenset[Permission]

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


class AccessError(Exception):
    """A grant or revoke that cannot be done as asked; the message says what to do instead."""


def known(enum: type[Role] | type[Permission], names: Iterable[str]) -> frozenset[Any]:
    """The names this code knows; a role or permission added in the database only is skipped (it
    grants nothing the code would check)."""
    values = {member.value for member in enum}
    return frozenset(enum(name) for name in names if name in values)


# -- passwords --------------------------------------------------------------------------------------

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the e-mail is unknown, so a login takes as long whether or not the account exists.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; always does the work of one verification."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# -- principals --------------------------------------------------------------------------------------

# One row per user with the role and permission names aggregated; $1 is the WHERE clause's value.
_PRINCIPAL = """
SELECT u.id, u.email, u.password_hash,
       coalesce(array_agg(DISTINCT ur.role) FILTER (WHERE ur.role IS NOT NULL), '{{}}') AS roles,
       coalesce(array_agg(DISTINCT rp.permission) FILTER (WHERE rp.permission IS NOT NULL), '{{}}') AS permissions
FROM users u
LEFT JOIN user_roles ur ON ur.user_id = u.id
LEFT JOIN role_permissions rp ON rp.role = ur.role
WHERE {where}
GROUP BY u.id
"""


def _principal(row: Mapping[str, Any]) -> Principal:
    return Principal(user_id=str(row["id"]), email=row["email"], roles=known(Role, row["roles"]),
                     permissions=known(Permission, row["permissions"]))


async def authenticate(conn: asyncpg.Connection, email: str, password: str) -> Principal | None:
    """The user with their roles and permissions when e-mail and password match, else None (the same
    work either way: no account probing)."""
    row = await conn.fetchrow(_PRINCIPAL.format(where="u.email = $1"), email.lower())
    ok = await asyncio.to_thread(verify_password, row["password_hash"] if row else None, password)
    return _principal(row) if ok and row else None


async def principal_of(conn: asyncpg.Connection, user_id: str) -> Principal | None:
    """The user's current roles and permissions (None when there is no such account)."""
    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        return None
    row = await conn.fetchrow(_PRINCIPAL.format(where="u.id = $1"), uid)
    return _principal(row) if row else None


async def principal_by_email(conn: asyncpg.Connection, email: str) -> Principal | None:
    row = await conn.fetchrow(_PRINCIPAL.format(where="u.email = $1"), email.lower())
    return _principal(row) if row else None


async def role_names(conn: asyncpg.Connection) -> list[str]:
    """Every role in the database, for error messages and listings."""
    return [r["name"] for r in await conn.fetch("SELECT name FROM roles ORDER BY name")]


@dataclass(frozen=True, slots=True)
class RoleGrant:
    """One role a user holds, who gave it, when, and what it permits."""

    role: str
    granted_by: str
    granted_at: datetime
    permissions: tuple[str, ...]


async def grants_of(conn: asyncpg.Connection, email: str) -> list[RoleGrant] | None:
    """The roles of the user with ``email`` (None when there is no such account)."""
    rows = await conn.fetch(
        "SELECT ur.role, ur.granted_by, ur.granted_at, "
        "       array(SELECT rp.permission FROM role_permissions rp WHERE rp.role = ur.role "
        "             ORDER BY rp.permission) AS permissions, u.id "
        "FROM users u LEFT JOIN user_roles ur ON ur.user_id = u.id WHERE u.email = $1 ORDER BY ur.role",
        email.lower())
    if not rows:
        return None
    return [RoleGrant(r["role"], r["granted_by"], r["granted_at"], tuple(r["permissions"]))
            for r in rows if r["role"] is not None]


# -- grants ------------------------------------------------------------------------------------------


def cli_actor() -> str:
    """Who acts from a terminal, as the audit log names them: ``cli:<os user>``."""
    return f"cli:{getpass.getuser()}"


def _actor_name(actor: Principal | str) -> str:
    return actor.email if isinstance(actor, Principal) else actor


async def _target(conn: asyncpg.Connection, email: str, role: str) -> uuid.UUID:
    """The user id to grant ``role`` to; ``AccessError`` naming what is unknown and what exists."""
    user_id = await conn.fetchval("SELECT id FROM users WHERE email = $1", email.lower())
    if user_id is None:
        raise AccessError(f"no account with e-mail {email.lower()}; it signs up first (POST /v1/auth/register) "
                          "or is made with `shopflow users create-admin`")
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM roles WHERE name = $1)", role):
        raise AccessError(f"no role {role!r}; the roles are: {', '.join(await role_names(conn))}")
    return user_id


async def add_role(conn: asyncpg.Connection, user_id: uuid.UUID, role: str, granted_by: str) -> bool:
    """Give a user a role without auditing (sign-up, admin creation); False when they had it."""
    added = await conn.fetchval(
        "INSERT INTO user_roles (user_id, role, granted_by) VALUES ($1, $2, $3) "
        "ON CONFLICT (user_id, role) DO NOTHING RETURNING true", user_id, role, granted_by)
    return bool(added)


async def grant(conn: asyncpg.Connection, *, email: str, role: str, actor: Principal | str) -> bool:
    """Give the user with ``email`` the role, audited; False (and still audited) when they had it.
    ``AccessError`` for an unknown user or role. Takes effect at the user's next login or token refresh."""
    async with conn.transaction():
        user_id = await _target(conn, email, role)
        added = await add_role(conn, user_id, role, _actor_name(actor))
        await audit(conn, actor=actor, action="role.grant", target=email.lower(),
                    detail={"role": role, "changed": added})
    return added


async def revoke(conn: asyncpg.Connection, *, email: str, role: str, actor: Principal | str) -> bool:
    """Take the role from the user, audited; False when they did not have it. ``AccessError`` as ``grant``."""
    async with conn.transaction():
        user_id = await _target(conn, email, role)
        removed = await conn.fetchval("DELETE FROM user_roles WHERE user_id = $1 AND role = $2 RETURNING true",
                                      user_id, role)
        await audit(conn, actor=actor, action="role.revoke", target=email.lower(),
                    detail={"role": role, "changed": bool(removed)})
    return bool(removed)


# -- audit -------------------------------------------------------------------------------------------


async def audit(conn: asyncpg.Connection, *, actor: Principal | str, action: str, target: str,
                detail: Mapping[str, Any] | None = None) -> None:
    """One row of the audit log: who (a user, or a tool such as ``cli:alice``), did what, to what."""
    actor_id = uuid.UUID(actor.user_id) if isinstance(actor, Principal) else None
    # Sent as text and cast: the same whether or not the connection decodes jsonb (the catalog's does not).
    await conn.execute(
        "INSERT INTO audit_log (actor_id, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5::text::jsonb)",
        actor_id, _actor_name(actor), action, target,
        None if detail is None else json.dumps(dict(detail), default=str))
