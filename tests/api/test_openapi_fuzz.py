"""Schemathesis against the edge's OpenAPI document, on the real stack, as a customer and as an admin.

Schemathesis' whole engine runs in-process against the app (it drives the lifespan): every phase
(examples, coverage, fuzzing, stateful) and every check it runs by default, with a fixed seed. The
run must end with no failure at all: no server error, no schema-valid request rejected, no
schema-violating request accepted, no undocumented status, header or body, no ``Allow`` that differs
from the methods the document gives the path.

Two things the document says and schemathesis cannot know are told to it here (``config``):
- a refusal by a rule a schema cannot state (a sku the catalog does not sell, a cursor this API did
  not issue, ``price_min`` above ``price_max``, an ``Idempotency-Key`` already used for another
  request) is a 400 or 422 that the document names, and schemathesis' ``positive_data_acceptance``
  does not count documented statuses, only its defaults (2xx, 3xx, 401, 403, 404, 409, 429, 5xx);
  its documentation's advice is to allow such statuses per operation, which ``RULES`` does. The
  check ``refused_by_a_rule`` keeps that narrow: a schema-valid request may be refused with 400 or
  422 only with a sentence (a rule), never with a list of invalid fields (which would mean the
  document and the edge disagree about a field);
- 413 (the body is larger than the edge accepts) is a refusal of invalid input too.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from pydantic import SecretStr, TypeAdapter, ValidationError
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from schemathesis.python.asgi import shutdown_lifespans

from shopflow.access import Principal, Role
from shopflow.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from shopflow.api.schemas import Email, OptionalText, PostalCode, ShortText, Text
from shopflow.api.security import TokenService
from shopflow.settings import Settings

SEED = 20261201
MAX_EXAMPLES = 25
# Statuses the document names for rules no schema can state, per operation (besides a reused
# Idempotency-Key, 422 on every operation that takes one).
RULES: dict[str, tuple[int, ...]] = {
    "GET /v1/orders": (400,),  # a cursor this API did not issue
    "GET /v1/admin/orders": (400,),
    "GET /v1/search": (400, 422),  # such a cursor; price_min above price_max, more than 20 distinct brands
    "POST /v1/auth/logout": (400,),  # a refresh token that is not a valid one
    "PUT /v1/wishlist/{sku}": (422,),  # a sku the catalog does not have or does not sell
    "POST /v1/orders": (422,),
    "POST /v1/cart/items": (422,),
    "PATCH /v1/cart/items/{sku}": (422,),
    "POST /v1/cart/checkout": (422,),  # a line of the cart no longer sold
    "POST /v1/admin/stock/{sku}/adjust": (422,),
    "POST /v1/products": (422,),  # an unknown category
    "PATCH /v1/products/{sku}": (422,),
    "POST /v1/categories": (422,),  # an unknown parent
    "PATCH /v1/categories/{category_id}": (422,),
    # a start or an end given twice, a time, offset or CEL filter that does not parse, no such partition
    "GET /v1/taps/{topic}": (422,),
    # a template that does not render with its sample data; a preview of a template that does not
    "POST /v1/admin/notification-templates": (422,),
    "PUT /v1/admin/notification-templates/{template}/{channel}/{locale}": (422,),
    "POST /v1/admin/notification-templates/preview": (422,),
    "PUT /v1/admin/stock/{sku}/low-stock-threshold": (422,),  # a sku the catalog does not have
    "PUT /v1/users/me/notification-preferences": (422,),  # quiet hours that start and end at the same hour
    "GET /v1/users/me/notifications": (422,),  # a `before` that looks like a time and is not one
    "POST /v1/users/me/push-subscriptions": (422,),  # an endpoint that is not https (RULE_FIELDS)
}
# Rules written as field validators, so refused with a field entry: (operation, field) -> the rule.
RULE_FIELDS = {
    ("POST /v1/orders", ("body", "lines")): "one line per sku",
    ("POST /v1/users/me/push-subscriptions", ("body", "endpoint")): "https, or http for a local push service",
}
# schemathesis' own defaults (``schemathesis.config._checks``, not exported): a list given replaces them.
POSITIVE_DEFAULTS = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
NEGATIVE_DEFAULTS = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]


@schemathesis.check
def refused_by_a_rule(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schema-valid request refused with 400 or 422 is refused by a rule: ``detail`` is a sentence, or
    names only fields whose rule is in ``RULE_FIELDS``."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code not in (400, 422):
        return None
    detail = response.json().get("detail") if "json" in response.headers.get("content-type", [""])[0] else None
    label = f"{case.method.upper()} {case.operation.path}"
    if isinstance(detail, str) or (isinstance(detail, list) and detail and all(
            (label, tuple(entry["loc"])) in RULE_FIELDS for entry in detail)):
        return None
    raise AssertionError(f"a schema-valid request was refused for its fields: {response.text[:500]}")


def rules(document: dict) -> dict[str, tuple[int, ...]]:
    """``RULES``, plus 422 for every operation that takes an Idempotency-Key (one used for another request)."""
    out = dict(RULES)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if any(p["in"] == "header" and p["name"] == IDEMPOTENCY_HEADER for p in operation.get("parameters", ())):
                label = f"{method.upper()} {path}"
                out[label] = tuple(sorted({*out.get(label, ()), 422}))
    return out


def config(document: dict) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES},
        "checks": {"negative_data_rejection": {"expected-statuses": [*NEGATIVE_DEFAULTS, "413"]}},
        "operations": [
            {"include-name": label,
             "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_DEFAULTS, *map(str, codes)]}}}
            for label, codes in sorted(rules(document).items())
        ],
    })


def fuzz_edge(app: FastAPI, access_token: Callable[[], str]) -> list[str]:
    """Run schemathesis' engine on the app; every failure it reports, with its request and response."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config(app.openapi()))

    class FreshToken:
        """A new access token for every request: a generated /v1/auth/logout must not sign out the next ones.

        A valid request also gets a key of its own, as the document asks ("a unique key per request"): the
        fuzzer draws keys from the header's pattern and repeats them, and a repeated key with the same
        body is answered with the first response (``Idempotent-Replayed``), even for a product deleted since,
        which its created-resource check would take for a lost write."""

        def get(self, case: Any, context: Any) -> str:
            return access_token()

        def set(self, case: Any, data: str, context: Any) -> None:
            headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
            if IDEMPOTENCY_HEADER in headers and case.meta is not None and case.meta.generation.mode.is_positive:
                headers[IDEMPOTENCY_HEADER] = str(uuid.uuid4())
            case.headers = headers

    schema.auth(refresh_interval=None)(FreshToken)
    found: list[str] = []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    response = event.recorder.find_response(case_id=case_id)
                    found.append(f"{failure.title} ({check.name}), {failure.operation}: {failure.message}\n"
                                 f"{check.failure_info.code_sample}\n-> {response.status_code if response else ''} "
                                 f"{response.text[:300] if response else ''}")
        elif isinstance(event, events.NonFatalError):
            found.append(f"error in {event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            found.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            assert event.stop_reason == "completed", event.stop_reason
    return found


@pytest.fixture(scope="module")
def document_app() -> FastAPI:
    """The app without its lifespan: enough for its document and its routing (no backing service)."""
    from shopflow.api.main import create_app

    return create_app(Settings(jwt_secret=SecretStr(secrets.token_urlsafe(48))))


def test_405_allows_every_method_of_the_path(document_app):
    document = document_app.openapi()

    async def allow_of_each_path() -> dict[str, tuple[int, set[str]]]:
        transport = httpx.ASGITransport(app=document_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            answers = {}
            for path in document["paths"]:
                response = await client.request("OPTIONS", re.sub(r"\{[^}]+\}", "1", path))
                answers[path] = (response.status_code, set(response.headers.get("allow", "").split(", ")))
            return answers

    for path, (status, allow) in asyncio.run(allow_of_each_path()).items():
        declared = {method.upper() for method in document["paths"][path]}
        assert status == 405 and allow - {"HEAD"} == declared, (path, status, allow)


def test_integer_bounds_are_exact_in_the_document(document_app):
    """FastAPI writes bounds as floats: one beyond 2**53 is not the edge's (2**63 - 1 reads 2**63)."""

    def bounds(node: Any) -> list[float]:
        if isinstance(node, list):
            return [b for item in node for b in bounds(item)]
        if not isinstance(node, dict):
            return []
        own = [node[k] for k in ("minimum", "maximum") if k in node and node.get("type") == "integer"]
        return own + [b for value in node.values() for b in bounds(value)]

    found = bounds(document_app.openapi())
    assert found and all(abs(bound) <= 2**53 for bound in found), sorted(found, key=abs)[-3:]


def test_every_location_the_document_mentions_is_declared(document_app):
    for path, operations in document_app.openapi()["paths"].items():
        for method, operation in operations.items():
            if "Location" not in operation.get("description", ""):
                continue
            success = [r for code, r in operation["responses"].items() if code.startswith("2")]
            assert any("Location" in r.get("headers", {}) for r in success), (method, path)


@pytest.mark.parametrize("text_type,limit,value", [
    (Email, 254, "a@b.cd"), (Text, 200, "x"), (ShortText, 100, "x"), (OptionalText, 200, "x"), (PostalCode, 20, "x"),
], ids=["email", "text", "short-text", "optional-text", "postal-code"])
def test_a_length_limit_holds_for_text_as_sent_not_once_trimmed(text_type, limit, value):
    # The document's maxLength is checked on the raw string; the edge trims first, and accepted a value
    # padded with spaces past the limit (schemathesis found it with an e-mail address).
    adapter = TypeAdapter(text_type)

    assert adapter.validate_python(value.rjust(limit)) == value
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python(value.rjust(limit + 1))
    assert refused.value.errors()[0]["type"] == "string_too_long"


@pytest.fixture(scope="module")
def fuzz(api_settings):
    """The app to fuzz, its token service, and a customer and an admin (with their permissions)."""
    from shopflow.access import principal_of
    from shopflow.api.main import create_app
    from shopflow.api.users import make_admin, register
    from shopflow.db import connect, migrate
    from shopflow.schemas.codec import AvroCodec
    from shopflow.schemas.registry import SchemaRegistry

    async def accounts() -> dict[Role, Principal]:
        conn = await connect(api_settings)
        registry = SchemaRegistry(api_settings.registry_url)
        try:
            await migrate(conn)
            codec = AvroCodec(registry)
            customer = await register(conn, codec, email=f"fuzz.{uuid.uuid4().hex[:8]}@example.test",
                                      password="fuzz-pass-1", display_name=None)
            admin = await make_admin(conn, codec, email=f"fuzz.admin.{uuid.uuid4().hex[:8]}@example.test",
                                     password="fuzz-pass-1")
            principals = {role: await principal_of(conn, user.id) for role, user in
                          ((Role.CUSTOMER, customer), (Role.ADMIN, admin))}
            return {role: p for role, p in principals.items() if p is not None}
        finally:
            registry.close()
            await conn.close()

    users = asyncio.run(accounts())
    yield create_app(api_settings), TokenService.from_settings(api_settings), users
    shutdown_lifespans()  # schemathesis started the app's lifespan on its own thread: close it now


@pytest.mark.integration
@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.ADMIN])
def test_the_edge_conforms_to_its_openapi(fuzz, role):
    app, tokens, users = fuzz
    user = users[role]
    failures = fuzz_edge(app, lambda: tokens.issue(user.user_id, user.roles, user.permissions).access_token)
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)
