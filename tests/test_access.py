"""shopflow.access: the seeded role -> permission mapping, sign-in, grants and the audit log, on a
throwaway PostgreSQL schema; and migration 0007 moving the old one-role column into user_roles."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shopflow.access import AccessError, Permission, Principal, Role, known

P = Permission


def test_a_principal_can_what_its_permissions_say():
    analyst = Principal("u", "a@x.io", frozenset({Role.DATA}), frozenset({P.TAPS_READ}))
    assert analyst.can(P.TAPS_READ) and not analyst.can(P.TAPS_UNMASK)


def test_names_the_code_does_not_know_are_skipped_not_fatal():
    assert known(Role, ["data", "auditor"]) == {Role.DATA}
    assert known(Permission, ["taps.read", "billing.export"]) == {P.TAPS_READ}


# -- on PostgreSQL ------------------------------------------------------------------------------------

MAPPING = {
    Role.CUSTOMER: set(),
    Role.DATA: {P.TAPS_READ},
    Role.OPS: {P.TAPS_READ, P.OPS_VIEW, P.OPS_ACT},
    Role.ADMIN: {P.TAPS_READ, P.TAPS_UNMASK, P.OPS_VIEW, P.OPS_ACT, P.SHOP_ADMIN},
}


@pytest.fixture(scope="module")
def access_db(stack, pg_schema_factory):
    """Settings on a migrated schema of their own."""
    from shopflow.db import migrate_database

    settings = stack.model_copy(update={"postgres_schema": pg_schema_factory("accesstest")})
    asyncio.run(migrate_database(settings))
    return settings


@pytest.fixture
async def conn(access_db):
    from shopflow.db import connect

    c = await connect(access_db)
    yield c
    await c.close()


async def _user(conn, role: Role = Role.CUSTOMER, password: str = "pw-123456") -> tuple[str, str]:
    """A user with one role, inserted directly (no outbox: the edge's sign-up is tested in tests/api)."""
    from shopflow.access import add_role, hash_password

    user_id, email = uuid.uuid4(), f"a{uuid.uuid4().hex[:10]}@example.test"
    await conn.execute("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)", user_id, email,
                       await asyncio.to_thread(hash_password, password))
    await add_role(conn, user_id, role, "test")
    return str(user_id), email


@pytest.mark.integration
@pytest.mark.parametrize("role", list(MAPPING))
async def test_each_role_has_its_seeded_permissions(conn, role):
    from shopflow.access import principal_of

    user_id, email = await _user(conn, role)
    principal = await principal_of(conn, user_id)
    assert principal == Principal(user_id, email, frozenset({role}), frozenset(MAPPING[role]))


@pytest.mark.integration
async def test_authenticate_gives_the_principal_for_the_right_password_only(conn):
    from shopflow.access import authenticate

    user_id, email = await _user(conn, Role.OPS)
    signed_in = await authenticate(conn, email.upper(), "pw-123456")
    assert signed_in is not None and signed_in.user_id == user_id and signed_in.can(P.OPS_ACT)
    assert await authenticate(conn, email, "wrong-pass") is None
    assert await authenticate(conn, "nobody@example.test", "pw-123456") is None


@pytest.mark.integration
async def test_grants_and_revokes_add_up_and_each_is_audited(conn):
    from shopflow.access import grant, grants_of, principal_of, revoke

    user_id, email = await _user(conn)
    assert await grant(conn, email=email, role="data", actor="cli:alice") is True
    assert await grant(conn, email=email, role="ops", actor="cli:alice") is True
    assert await grant(conn, email=email, role="data", actor="cli:alice") is False  # had it: no change
    principal = await principal_of(conn, user_id)
    assert principal is not None and principal.permissions == MAPPING[Role.OPS] | MAPPING[Role.DATA]
    assert [g.role for g in await grants_of(conn, email) or []] == ["customer", "data", "ops"]

    assert await revoke(conn, email=email, role="ops", actor=principal) is True
    assert (await principal_of(conn, user_id)).permissions == {P.TAPS_READ}  # type: ignore[union-attr]

    rows = await conn.fetch("SELECT actor_id, actor, action, detail FROM audit_log WHERE target = $1 ORDER BY id",
                            email)
    assert [(r["actor"], r["action"], r["detail"]["role"], r["detail"]["changed"]) for r in rows] == [
        ("cli:alice", "role.grant", "data", True), ("cli:alice", "role.grant", "ops", True),
        ("cli:alice", "role.grant", "data", False), (email, "role.revoke", "ops", True)]
    assert str(rows[-1]["actor_id"]) == user_id  # a signed-in actor is recorded by id too


@pytest.mark.integration
async def test_an_unknown_role_or_user_is_refused_listing_what_exists(conn):
    from shopflow.access import grant

    _, email = await _user(conn)
    with pytest.raises(AccessError, match="no role 'root'; the roles are: admin, customer, data, ops"):
        await grant(conn, email=email, role="root", actor="test")
    with pytest.raises(AccessError, match="no account with e-mail nobody@example.test"):
        await grant(conn, email="nobody@example.test", role="data", actor="test")
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE target = $1", email) == 0


@pytest.fixture
def empty_schema(stack, pg_schema_factory):
    """Settings on a schema with no tables yet."""
    return stack.model_copy(update={"postgres_schema": pg_schema_factory("accessmigr")})


@pytest.mark.integration
async def test_migration_0007_moves_each_users_role_into_user_roles(empty_schema, monkeypatch, tmp_path):
    """Given accounts made before 0007 (one role column), when 0007 runs, then each keeps its role."""
    import shutil

    from shopflow import db
    from shopflow.access import principal_of

    settings = empty_schema
    for path in sorted(db.MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0007":
            shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(db, "MIGRATIONS_DIR", tmp_path)
    await db.migrate_database(settings)
    conn = await db.connect(settings)
    try:
        admin, customer = uuid.uuid4(), uuid.uuid4()
        await conn.executemany("INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, 'x', $3)",
                               [(admin, f"{admin}@example.test", "admin"), (customer, f"{customer}@x.io", "customer")])
        monkeypatch.undo()
        assert "0007_roles.sql" in await db.migrate(conn)

        assert (await principal_of(conn, str(admin))).roles == {Role.ADMIN}  # type: ignore[union-attr]
        assert (await principal_of(conn, str(customer))).roles == {Role.CUSTOMER}  # type: ignore[union-attr]
        assert not await conn.fetchval("SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 "
                                       "AND table_name = 'users' AND column_name = 'role'", settings.postgres_schema)
    finally:
        await conn.close()
