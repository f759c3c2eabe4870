"""The console in-process for its page tests, on the real stack: signed in with a role, its PostgreSQL
tables in a throwaway schema, and the orders read model fed there by a real projection.

``signed_in(settings, role)`` runs ``console.main.create_app`` with its lifespan (httpx ``ASGITransport``),
creates an account with ``role`` and signs it in through ``/login`` as a script does (JSON); the client
keeps the session cookie. ``projecting(settings, codec)`` runs the order projection into the settings'
schema from the orders topic's current end, until the block ends.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from shopflow.access import Role
from shopflow.api.users import register
from shopflow.console.main import create_app
from shopflow.console.sessions import LOGIN_COOKIE
from shopflow.schemas.codec import AvroCodec
from shopflow.settings import Settings
from shopflow.streams.order_projection import OrderProjection
from shopflow.topologies.catalog import ORDERS

JSON = {"Accept": "application/json"}


@asynccontextmanager
async def signed_in(settings: Settings, role: Role = Role.OPS) -> AsyncIterator[httpx.AsyncClient]:
    # Other tests sign in from 127.0.0.1 too, in the same window: the per-address limit is not this test's subject.
    app = create_app(settings.model_copy(update={"ops_login_attempts": 1_000_000}))
    async with app.router.lifespan_context(app):
        console = app.state.console
        email, password = f"{role}-{uuid.uuid4().hex[:10]}@example.com", secrets.token_urlsafe(18)
        async with console.pool.acquire() as conn:
            await register(conn, console.codec, email=email, password=password, display_name=None, role=role)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops",
                                     timeout=120) as client:
            await client.get("/login")
            signed = await client.post("/login", headers=JSON, data={
                "email": email, "password": password, "csrf_token": client.cookies.get(LOGIN_COOKIE) or ""})
            assert signed.status_code == 200, signed.text
            yield client


def _commit_at_end(settings: Settings, group: str) -> None:
    """The group starts at the orders topic's end: the projection reads only what comes from now on."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(ORDERS.name, timeout=10).topics[ORDERS.name].partitions
        ends = [TopicPartition(ORDERS.name, p, consumer.get_watermark_offsets(TopicPartition(ORDERS.name, p),
                                                                              timeout=10)[1]) for p in partitions]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


@asynccontextmanager
async def projecting(settings: Settings, codec: AvroCodec) -> AsyncIterator[OrderProjection]:
    group = f"test-console-projection-{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(_commit_at_end, settings, group)
    projection = OrderProjection(settings, codec, group_id=group)
    stop = asyncio.Event()
    running = asyncio.create_task(projection.run(stop))
    try:
        yield projection
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


def console_fixtures(schema_prefix: str) -> tuple[Callable[..., Settings], Callable[..., AsyncIterator]]:
    """A test module's ``ops_settings`` (the stack's, the console's tables in a schema of the module's) and
    ``ops`` (a client signed in with the ops role), module-scoped: ``ops_settings, ops = console_fixtures("x")``."""

    @pytest.fixture(scope="module")
    def ops_settings(stack: Settings, pg_schema_factory: Callable[[str], str]) -> Settings:
        return stack.model_copy(update={"postgres_schema": pg_schema_factory(schema_prefix)})

    @pytest.fixture(scope="module")
    async def ops(ops_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        async with signed_in(ops_settings) as client:
            yield client

    return ops_settings, ops
