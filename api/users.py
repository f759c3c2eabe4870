"""Accounts in PostgreSQL: sign-up (with its UserRegistered through the outbox), sign-in, admins.

A new user and the UserRegistered event announcing it are inserted in one transaction, the event
as a codec-framed Avro row of the ``outbox`` table that Debezium's outbox router carries to the
``users`` topic. There is no second write to Kafka that could fail after the account exists.

The first admin cannot sign up as one (sign-up always makes a customer); it is made from the
command line with ``create_admin`` (``shopflow users create-admin EMAIL``), which can also promote
an existing account.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from shopflow.api.converters import to_user_registered, user_from_row
from shopflow.api.schemas import UserPublic
from shopflow.api.security import Role, hash_password, verify_password
from shopflow.db import connect, migrate
from shopflow.outbox import Outbox
from shopflow.schemas.codec import AvroCodec
from shopflow.settings import Settings
from shopflow.topologies.catalog import USERS

_COLUMNS = "id, email, display_name, role, created_at"


class EmailTaken(Exception):
    """An account with this e-mail address exists."""


async def register(conn: asyncpg.Connection, codec: AvroCodec, *, email: str, password: str,
                   display_name: str | None, role: Role = Role.CUSTOMER) -> UserPublic:
    """Create the account and its outbox event together; ``EmailTaken`` when the address is in use."""
    password_hash = await asyncio.to_thread(hash_password, password)  # ~50 ms of CPU: off the event loop
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                f"INSERT INTO users (id, email, password_hash, display_name, role) VALUES ($1, $2, $3, $4, $5) "
                f"RETURNING {_COLUMNS}",
                uuid.uuid4(), email.lower(), password_hash, display_name, role.value,
            )
            user = user_from_row(row)
            event = to_user_registered(user)
            await Outbox(codec, USERS).write(conn, [(user.id, event)])
    except asyncpg.UniqueViolationError:
        raise EmailTaken(f"an account with e-mail {email.lower()} already exists") from None
    return user


async def authenticate(conn: asyncpg.Connection, email: str, password: str) -> UserPublic | None:
    """The user when e-mail and password match, else None (same work either way: no account probing)."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS}, password_hash FROM users WHERE email = $1", email.lower())
    ok = await asyncio.to_thread(verify_password, row["password_hash"] if row else None, password)
    return user_from_row(row) if ok and row else None


async def get_user(conn: asyncpg.Connection, user_id: str) -> UserPublic | None:
    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        return None
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", uid)
    return user_from_row(row) if row else None


async def make_admin(conn: asyncpg.Connection, codec: AvroCodec, *, email: str, password: str,
                     display_name: str | None = None, promote: bool = False) -> UserPublic:
    """A new admin account, or (``promote``) an existing account raised to admin."""
    try:
        return await register(conn, codec, email=email, password=password, display_name=display_name,
                              role=Role.ADMIN)
    except EmailTaken:
        if not promote:
            raise
    row = await conn.fetchrow(f"UPDATE users SET role = 'admin' WHERE email = $1 RETURNING {_COLUMNS}", email.lower())
    return user_from_row(row)


def create_admin(settings: Settings, email: str, password: str, display_name: str | None = None,
                 promote: bool = False) -> UserPublic:
    """For the CLI: migrate, then create (or promote) an admin. Raises ``EmailTaken`` or ``ValueError``."""
    from shopflow.api.schemas import RegisterRequest
    from shopflow.schemas.registry import SchemaRegistry

    # The same rules as sign-up, so an admin cannot get a password a customer could not.
    checked = RegisterRequest(email=email, password=password, display_name=display_name)

    async def run() -> UserPublic:
        conn = await connect(settings)
        registry = SchemaRegistry(settings.registry_url)
        try:
            await migrate(conn)
            return await make_admin(conn, AvroCodec(registry), email=checked.email, password=checked.password,
                                    display_name=checked.display_name, promote=promote)
        finally:
            registry.close()
            await conn.close()

    return asyncio.run(run())
