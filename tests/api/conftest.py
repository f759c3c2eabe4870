"""Fixtures for the edge's tests: the app on the real stack, in a throwaway PostgreSQL schema.

The app runs in-process (httpx ``ASGITransport``) with its lifespan, against the real PostgreSQL,
Redis, Kafka and registry. Its tables live in a schema made for this session (``apitest_<hex>``,
dropped at the end), so tests neither see nor leave rows in the real database; the session's
products are inserted there.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from polling import eventually
from pydantic import SecretStr

from shopflow.settings import Settings
from shopflow.topologies.catalog import Topic

# The session's catalog: A, B, C in EUR, USD1 in USD, OLD inactive, GONE deleted.
PRICES = {"A": (1999, "EUR"), "B": (500, "EUR"), "C": (12000, "EUR"), "USD1": (999, "USD"), "OLD": (100, "EUR"),
          "GONE": (100, "EUR")}


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    password: str
    role: str
    access: str
    refresh: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


@pytest.fixture(scope="session")
def pg_schema(pg_schema_factory) -> str:
    return pg_schema_factory("apitest")


@pytest.fixture(scope="session")
def api_settings(stack: Settings, pg_schema: str, saga_workers: list[str]) -> Settings:
    # Limits high enough that only the rate-limit test (with its own app) ever meets them.
    return stack.model_copy(update={
        "postgres_schema": pg_schema, "jwt_secret": SecretStr(secrets.token_urlsafe(48)),
        "rate_limit_per_user": 100_000, "rate_limit_anonymous": 100_000, "worker_url": saga_workers[0],
    })


@pytest.fixture(scope="session")
def skus() -> dict[str, str]:
    """The session's catalog skus by their role in ``PRICES``."""
    run = uuid.uuid4().hex[:6].upper()
    return {k: f"T{run}-{k}" for k in PRICES}


async def _seed_products(settings: Settings, skus: dict[str, str]) -> None:
    from shopflow.db import connect, migrate

    conn = await connect(settings)
    try:
        await migrate(conn)
        for key, (price, currency) in PRICES.items():
            await conn.execute(
                "INSERT INTO products (sku, name, price_minor, currency, active, deleted_at) "
                "VALUES ($1, $1, $2, $3, $4, CASE WHEN $5 THEN now() END)",
                skus[key], price, currency, key != "OLD", key == "GONE")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def app(api_settings: Settings, skus: dict[str, str]):
    """The edge with its lifespan running (one for the session)."""
    from shopflow.api.main import create_app

    await _seed_products(api_settings, skus)
    application = create_app(api_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge") as c:
        yield c


@pytest.fixture(scope="session")
def new_account(app, client: httpx.AsyncClient) -> Callable:
    """``await new_account(role="customer")``: a fresh signed-in account; ``"admin"`` made as the CLI makes
    one, ``"data"`` or ``"ops"`` a customer granted that role too."""
    from shopflow.access import grant
    from shopflow.api.users import make_admin

    async def make(role: str = "customer") -> Account:
        email, password = f"u{uuid.uuid4().hex[:12]}@example.test", secrets.token_urlsafe(12)
        edge = app.state.edge
        if role == "admin":
            async with edge.pool.acquire() as conn:
                await make_admin(conn, edge.codec, email=email, password=password)
        else:
            r = await client.post("/v1/auth/register", json={"email": email, "password": password})
            assert r.status_code == 201, r.text
            if role != "customer":
                async with edge.pool.acquire() as conn:
                    await grant(conn, email=email, role=role, actor="test")
        r = await client.post("/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        tokens = r.json()
        me = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200, me.text
        return Account(me.json()["id"], email, password, role, tokens["access_token"], tokens["refresh_token"])

    return make


@pytest.fixture(scope="session")
def idem() -> Callable[[], dict[str, str]]:
    """``idem()``: a header with a fresh Idempotency-Key."""
    return lambda: {"Idempotency-Key": str(uuid.uuid4())}


# -- reading topics --------------------------------------------------------------------------------------


def end_offsets(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex}"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def read_since(settings: Settings, topic: str, since: dict[int, int],
               until: Callable[[list[Message]], bool] | None = None, timeout_s: float = 20.0) -> list[Message]:
    """Messages of ``topic`` after ``since``: up to the end offsets as of now, or until ``until(messages)``;
    an AssertionError if that is not so within ``timeout_s``."""
    ends = end_offsets(settings, topic, len(since))
    pending = {p: ends[p] - 1 for p in since if ends[p] > since[p]}  # last offset still to see, per partition
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, o) for p, o in since.items()])
    out: list[Message] = []

    def read_enough() -> bool:
        if until(out) if until is not None else not pending:
            return True
        msg = c.poll(0.2)  # waits for the next message itself: no pause between tries
        if msg is not None and not msg.error():
            out.append(msg)
            if pending.get(msg.partition(), -1) <= msg.offset():
                pending.pop(msg.partition(), None)
        return False

    try:
        eventually(read_enough, timeout_s, interval_s=0,
                   what=f"the awaited messages of {topic}" if until is not None else f"{topic} up to its end offsets")
        return out
    finally:
        c.close()


@pytest.fixture
def topic_reader(stack: Settings):
    """``mark = topic_reader.mark(topic)`` before, ``topic_reader.since(topic, mark)`` after."""

    class Reader:
        @staticmethod
        def mark(topic: Topic) -> dict[int, int]:
            return end_offsets(stack, topic.name, topic.partitions)

        @staticmethod
        def since(topic: Topic, mark: dict[int, int], until=None, timeout_s: float = 20.0) -> list[Message]:
            return read_since(stack, topic.name, mark, until, timeout_s)

    return Reader()
