"""Permissions on the edge: ``require()`` on its own, and `shopflow users grant/revoke` taking effect at refresh."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import HTTPException
from typer.testing import CliRunner

from shopflow.access import Permission, Role
from shopflow.api.dependencies import require
from shopflow.api.security import Claims, TokenType


def _claims(*permissions: Permission) -> Claims:
    return Claims("u-1", TokenType.ACCESS, "j", int(time.time()) + 60, roles=frozenset({Role.DATA}),
                  permissions=frozenset(permissions))


async def test_require_passes_the_claims_of_a_token_with_the_permission():
    claims = _claims(Permission.TAPS_READ)
    assert await require(Permission.TAPS_READ)(claims) is claims


async def test_require_refuses_403_naming_the_permission_and_what_to_do():
    with pytest.raises(HTTPException) as refused:
        await require(Permission.TAPS_UNMASK)(_claims(Permission.TAPS_READ))
    assert refused.value.status_code == 403
    assert "taps.unmask permission" in refused.value.detail and "shopflow users grant" in refused.value.detail


def _cli(schema: str, *args: str):
    """``shopflow users ...`` in this process, on the edge's test schema."""
    from shopflow.cli import app
    from shopflow.settings import get_settings

    get_settings.cache_clear()  # the command reads the settings anew, with the schema from the environment
    try:
        return CliRunner().invoke(app, ["users", *args], env={"SHOPFLOW_POSTGRES_SCHEMA": schema})
    finally:
        get_settings.cache_clear()


@pytest.mark.integration
async def test_a_grant_then_a_revoke_by_the_cli_take_effect_at_the_next_refresh(client, new_account, api_settings):
    account = await new_account()
    tap = "/v1/taps/users.dlq"
    assert (await client.get(tap, headers=account.auth)).status_code == 403

    granted = await asyncio.to_thread(_cli, api_settings.postgres_schema, "grant", account.email, "data")
    assert granted.exit_code == 0 and "granted data" in granted.output, granted.output
    assert (await client.get(tap, headers=account.auth)).status_code == 403  # the token still says customer
    r = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh})
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await client.get(tap, headers=auth, params={"limit": 1})).status_code == 200

    listed = await asyncio.to_thread(_cli, api_settings.postgres_schema, "roles", account.email)
    assert listed.exit_code == 0 and "taps.read" in listed.output and "cli:" in listed.output

    revoked = await asyncio.to_thread(_cli, api_settings.postgres_schema, "revoke", account.email, "data")
    assert revoked.exit_code == 0 and "revoked data" in revoked.output
    r = await client.post("/v1/auth/refresh", json={"refresh_token": r.json()["refresh_token"]})
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await client.get(tap, headers=auth)).status_code == 403


@pytest.mark.integration
@pytest.mark.parametrize("args,says", [
    (("grant", "{email}", "superuser"), "no role 'superuser'; the roles are: admin, customer, data, ops"),
    (("grant", "nobody-{email}", "data"), "no account with e-mail nobody-"),
    (("revoke", "{email}", "root"), "the roles are: admin, customer, data, ops"),
    (("roles", "nobody-{email}"), "no account with e-mail nobody-"),
])
async def test_an_unknown_user_or_role_is_a_usage_error(new_account, api_settings, args, says):
    account = await new_account()
    result = await asyncio.to_thread(_cli, api_settings.postgres_schema, *(a.format(email=account.email) for a in args))
    assert result.exit_code == 2, result.output
    assert says in result.output
