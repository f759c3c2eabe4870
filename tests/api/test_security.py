"""Tokens, passwords and the JWT secret, without servers."""

from __future__ import annotations

import base64
import json
import threading
import time

import jwt
import pytest

from shopflow.access import Permission, Role, hash_password, verify_password
from shopflow.api.security import TokenError, TokenService, TokenType, ensure_jwt_secret
from shopflow.settings import Settings

SECRET = "s" * 48


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET, access_ttl_s=60, refresh_ttl_s=3600)


CUSTOMER = ({Role.CUSTOMER}, set())


def test_an_issued_pair_verifies_as_what_it_is(tokens):
    pair = tokens.issue("user-1", {Role.ADMIN, Role.DATA}, {Permission.SHOP_ADMIN, Permission.TAPS_READ})
    access = tokens.verify(pair.access_token, TokenType.ACCESS)
    refresh = tokens.verify(pair.refresh_token, TokenType.REFRESH)
    assert (access.user_id, access.type) == ("user-1", TokenType.ACCESS)
    assert access.roles == {Role.ADMIN, Role.DATA}
    assert access.permissions == {Permission.SHOP_ADMIN, Permission.TAPS_READ}
    assert access.can(Permission.TAPS_READ) and not access.can(Permission.TAPS_UNMASK)
    # A refresh token proves who, not what: refreshing reads the roles again from PostgreSQL.
    assert refresh.type is TokenType.REFRESH and refresh.jti != access.jti
    assert refresh.roles == frozenset() and refresh.permissions == frozenset()
    assert 55 <= access.seconds_left() <= 60 and pair.expires_in == 60


def test_a_refresh_token_is_not_an_access_token_and_back(tokens):
    pair = tokens.issue("u", *CUSTOMER)
    with pytest.raises(TokenError, match="refresh token was given where a access token"):
        tokens.verify(pair.refresh_token, TokenType.ACCESS)
    with pytest.raises(TokenError, match="access token was given where a refresh token"):
        tokens.verify(pair.access_token, TokenType.REFRESH)


def test_an_expired_token_is_refused_saying_so(tokens):
    old = tokens.issue("u", *CUSTOMER, now=time.time() - 120)
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(old.access_token, TokenType.ACCESS)


def _tamper(token: str, **changes) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_a_tampered_token_is_refused(tokens):
    token = tokens.issue("u", *CUSTOMER).access_token
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(_tamper(token, roles=["admin"], permissions=["shop.admin"]), TokenType.ACCESS)


def _signed(secret: str | None = SECRET, algorithm: str = "HS256", **claims) -> str:
    now = int(time.time())
    base = {"sub": "u", "roles": ["admin"], "permissions": ["shop.admin"], "typ": "access", "jti": "j",
            "iat": now, "exp": now + 60, "iss": "shopflow"}
    return jwt.encode({k: v for k, v in {**base, **claims}.items() if v is not None}, secret, algorithm=algorithm)


@pytest.mark.parametrize("forge", [
    lambda: _signed("another-secret-of-enough-length-xxxxxxxx"),
    lambda: _signed(None, "none"),  # alg "none": an unsigned token must never be trusted
    lambda: _signed(jti=None),
    lambda: _signed(roles=["root"]),  # no such role
    lambda: _signed(permissions=["everything"]),  # no such permission
    lambda: _signed(roles="admin"),  # not a list
    # made before roles were lists: refused, so the holder refreshes into one with permissions
    lambda: _signed(roles=None, permissions=None, role="admin"),
    lambda: "not.a.jwt",
    lambda: "",
], ids=["other-secret", "alg-none", "no-jti", "unknown-role", "unknown-permission", "roles-not-a-list",
        "old-single-role", "garbage", "empty"])
def test_forged_or_malformed_tokens_are_refused(tokens, forge):
    with pytest.raises(TokenError):
        tokens.verify(forge(), TokenType.ACCESS)


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenService("short", 60, 60)


def test_passwords_hash_with_argon2id_and_verify():
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong horse")
    assert not verify_password(None, "anything")  # unknown account: same work, always False
    assert not verify_password("not-a-hash", "x")


def test_the_secret_is_generated_once_into_secrets_env_and_shared(tmp_path):
    settings = Settings(home=tmp_path, jwt_secret=None, _env_file=None)
    results: list[Settings] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_jwt_secret(settings))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secrets = {s.jwt_secret.get_secret_value() for s in results}
    assert len(secrets) == 1 and len(next(iter(secrets))) >= 32
    text = (tmp_path / "secrets.env").read_text()
    assert text.count("SHOPFLOW_JWT_SECRET=") == 1
    assert (tmp_path / "secrets.env").stat().st_mode & 0o077 == 0  # readable by the owner only
    # A configured secret is used as is, and nothing is written.
    configured = Settings(home=tmp_path / "other", jwt_secret="c" * 40, _env_file=None)
    assert ensure_jwt_secret(configured) is configured and not (tmp_path / "other").exists()


def test_a_remembered_token_still_expires_and_keeps_its_type(tokens, monkeypatch):
    pair = tokens.issue("u", *CUSTOMER)
    assert tokens.verify(pair.access_token, TokenType.ACCESS).user_id == "u"  # decoded, remembered
    with pytest.raises(TokenError, match="access token was given where a refresh token"):
        tokens.verify(pair.access_token, TokenType.REFRESH)  # from memory: the type is still checked
    later = time.time() + 61
    monkeypatch.setattr("shopflow.api.security.time.time", lambda: later)
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(pair.access_token, TokenType.ACCESS)


def test_the_memory_of_verified_tokens_is_bounded(tokens, monkeypatch):
    monkeypatch.setattr(TokenService, "CACHE_SIZE", 3)
    issued = [tokens.issue(f"u{i}", *CUSTOMER).access_token for i in range(5)]
    for token in issued:
        tokens.verify(token, TokenType.ACCESS)
    assert list(tokens._verified) == issued[-3:]
