"""Accounts in PostgreSQL: sign-up (with its UserRegistered through the outbox), profiles, admins.

A new user, their first role and the UserRegistered event announcing them are inserted in one
transaction, the event as a codec-framed Avro row of the ``outbox`` table that Debezium's outbox
router carries to the ``users`` topic. There is no second write to Kafka that could fail after the
account exists. Roles live in ``user_roles`` (``shopflow.access``); sign-in is ``access.authenticate``.

The first admin cannot sign up as one (sign-up always makes a customer); it is made from the
command line with ``create_admin`` (``shopflow users create-admin EMAIL``), which can also promote
an existing account; other roles are granted with ``shopflow users grant EMAIL ROLE``.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from shopflow.access import Role, add_role, audit, cli_actor, grant, hash_password
from shopflow.api.converters import to_user_registered, user_from_row
from shopflow.api.schemas import UserPublic
from shopflow.db import connect, migrate
from shopflow.outbox import Outbox
from shopflow.schemas.codec import AvroCodec
from shopflow.settings import Settings
from shopflow.topologies.catalog import USERS

# A profile with its roles (by name); $1 is the WHERE clause's value.
_PROFILE = """
SELECT u.id, u.email, u.display_name, u.created_at,
       array(SELECT ur.role FROM user_roles ur WHERE ur.user_id = u.id ORDER BY ur.role) AS roles
FROM users u WHERE {where}
"""


class EmailTaken(Exception):
    """An account with this e-mail address exists."""


async def _profile(conn: asyncpg.Connection, where: str, value: object) -> UserPublic | None:
    row = await conn.fetchrow(_PROFILE.format(where=where), value)
    return user_from_row(row) if row else None


async def register(conn: asyncpg.Connection, codec: AvroCodec, *, email: str, password: str,
                   display_name: str | None, role: Role = Role.CUSTOMER) -> UserPublic:
    """Create the account, its role and its outbox event together; ``EmailTaken`` when the address is in use."""
    password_hash = await asyncio.to_thread(hash_password, password)  # ~50 ms of CPU: off the event loop
    user_id = uuid.uuid4()
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO users (id, email, password_hash, display_name) VALUES ($1, $2, $3, $4)",
                               user_id, email.lower(), password_hash, display_name)
            await add_role(conn, user_id, role, "sign-up" if role is Role.CUSTOMER else "create-admin")
            user = await _profile(conn, "u.id = $1", user_id)
            assert user is not None  # inserted just above, in this transaction
            await Outbox(codec, USERS).write(conn, [(user.id, to_user_registered(user))])
    except asyncpg.UniqueViolationError:
        raise EmailTaken(f"an account with e-mail {email.lower()} already exists") from None
    return user


async def get_user(conn: asyncpg.Connection, user_id: str) -> UserPublic | None:
    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        return None
    return await _profile(conn, "u.id = $1", uid)


async def make_admin(conn: asyncpg.Connection, codec: AvroCodec, *, email: str, password: str,
                     display_name: str | None = None, promote: bool = False) -> UserPublic:
    """A new admin account, or (``promote``) an existing account given the admin role as well; either is
    written to the audit log as a grant by whoever ran the command."""
    try:
        created = await register(conn, codec, email=email, password=password, display_name=display_name,
                                 role=Role.ADMIN)
    except EmailTaken:
        if not promote:
            raise
        await grant(conn, email=email, role=Role.ADMIN, actor=cli_actor())  # audited by grant
    else:
        await audit(conn, actor=cli_actor(), action="role.grant", target=email.lower(),
                    detail={"role": Role.ADMIN.value, "new_account": True})
        return created
    user_id = await conn.fetchval("SELECT id FROM users WHERE email = $1", email.lower())
    user = await _profile(conn, "u.id = $1", user_id)
    assert user is not None
    return user


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
