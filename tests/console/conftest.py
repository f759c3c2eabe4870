"""Fixtures of the ops console's tests: ``shopflow ops`` as its own process on the real stack, users
with roles, and signed-in HTTP clients.

The console runs in a throwaway PostgreSQL schema (``opstest_<hex>``, dropped at the end), so its
users, roles and audit rows neither see nor leave anything in the real database; Redis, Kafka and
Prometheus are the stack's. Users are made with ``shopflow.access`` (a password hash and roles).

- ``ops_settings``: the stack's settings with that schema and a free console port.
- ``ops_console``: the console's base URL, started once per session (``shopflow.launch``).
- ``ops_user_factory(*roles)``: a fresh user with those roles (``OpsUser``: e-mail, password, id).
- ``ops_session(user)``: an ``OpsSession``: an httpx client signed in as ``user`` and its CSRF token.

Scenarios the HTTP tests and the browser tests (tests/console/browser/) both set up, here so that neither
imports fixtures from the other's modules:

- ``lagging_group``: (group, topic), a group 15 records behind on a topic of its own.
- ``failing_connector``: (name, publication), a Connect connector whose task FAILS at start.
- ``running_monitor(saga_topics)``: a monitor over stand-in saga topics publishing its stuck orders where
  the console of ``ops_settings`` reads them (the board's key carries that schema).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from polling import eventually, eventually_async
from prometheus_client import CollectorRegistry

from shopflow.access import add_role, hash_password
from shopflow.connectors.apply import CONNECTORS_DIR, ConnectClient, Connector
from shopflow.db import connect, migrate_database
from shopflow.launch import ShopflowProcess, ops_health
from shopflow.settings import Settings
from shopflow.streams.client import now_ms
from shopflow.streams.monitor import Monitor
from shopflow.topologies.catalog import CART_EVENTS


@dataclass(frozen=True)
class OpsUser:
    email: str
    password: str
    user_id: str


@dataclass
class OpsSession:
    client: httpx.Client
    csrf_token: str
    user: OpsUser

    @property
    def csrf(self) -> dict[str, str]:
        """The header an action sends its CSRF token in."""
        return {"X-CSRF-Token": self.csrf_token}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ops_settings(stack: Settings, pg_schema_factory: Callable[[str], str]) -> Settings:
    # A sign-in limit only the rate-limit test (with its own app) ever meets.
    settings = stack.model_copy(update={"postgres_schema": pg_schema_factory("opstest"), "ops_port": _free_port(),
                                        "ops_login_attempts": 100_000})
    asyncio.run(migrate_database(settings))
    return settings


@pytest.fixture(scope="session")
def ops_console(ops_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console's base URL: ``shopflow ops`` on the session's schema, ready when ``/health`` answers."""
    env = {f"SHOPFLOW_{name.upper()}": str(getattr(ops_settings, name))
           for name in ("postgres_schema", "ops_port", "ops_login_attempts")}
    proc = ShopflowProcess("ops console", ["ops"], tmp_path_factory.mktemp("ops") / "ops.log",
                           health=ops_health(ops_settings), env=env, timeout_s=60)
    proc.start()
    yield f"http://{ops_settings.host}:{ops_settings.ops_port}"
    proc.close()


async def _make_user(settings: Settings, roles: tuple[str, ...]) -> OpsUser:
    user = OpsUser(f"ops-{uuid.uuid4().hex[:12]}@example.test", secrets.token_urlsafe(12), str(uuid.uuid4()))
    conn = await connect(settings)
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)",
                               uuid.UUID(user.user_id), user.email, hash_password(user.password))
            for role in roles:
                await add_role(conn, uuid.UUID(user.user_id), role, "tests")
    finally:
        await conn.close()
    return user


@pytest.fixture(scope="session")
def ops_user_factory(ops_settings: Settings) -> Callable[..., OpsUser]:
    """``ops_user_factory("ops")``: a fresh user with those roles (none: a user without any)."""
    return lambda *roles: asyncio.run(_make_user(ops_settings, roles))


def sign_in(base_url: str, user: OpsUser) -> OpsSession:
    """Sign in as a script does: GET /login for the sign-in token's cookie, POST the form asking for JSON."""
    client = httpx.Client(base_url=base_url, timeout=30)
    form = client.get("/login")
    token = form.cookies["shopflow_ops_login"]
    answer = client.post("/login", data={"email": user.email, "password": user.password, "csrf_token": token},
                         headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    return OpsSession(client, answer.json()["csrf_token"], user)


@pytest.fixture
def ops_session(ops_console: str) -> Iterator[Callable[[OpsUser], OpsSession]]:
    """``ops_session(user)``: a client signed in as ``user`` (closed after the test)."""
    sessions: list[OpsSession] = []

    def make(user: OpsUser) -> OpsSession:
        sessions.append(sign_in(ops_console, user))
        return sessions[-1]

    yield make
    for session in sessions:
        session.client.close()


# -- scenarios shared by the HTTP and the browser tests ------------------------------------------------------

# A monitor that sweeps, settles and judges a payment stuck within seconds.
FAST_MONITOR = {"monitor_interval_s": 0.5, "monitor_settle_s": 5.0, "monitor_stuck_grace_s": 0.5,
                "payment_timeout_s": 2.0}


@pytest.fixture
def lagging_group(admin, topic_factory, producer) -> Iterator[tuple[str, str]]:
    """A group committed at offset 5 of 20 records on a topic of its own: lag 15. Deleted after."""
    topic, group = topic_factory("ops-lag"), f"test-ops-{uuid.uuid4().hex[:8]}"
    for n in range(20):
        producer.produce(topic, key=f"k{n}".encode(), value=f"record {n}".encode())
    producer.flush(10)
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 5)])]
                                       )[group].result(timeout=30)
    yield group, topic
    admin.delete_consumer_groups([group])[group].result(timeout=30)


@pytest.fixture
def lagging_dead_letters(stack, admin, producer) -> Iterator[tuple[str, str, int]]:
    """A group 15 records behind on a dead-letter topic of the catalog (the topics the console may tap;
    no agent reads them): 20 records from ``base``, committed at ``base + 5``. The group is deleted after;
    the records stay, as any dead letter does until retention."""
    topic, group = CART_EVENTS.dead_letter, f"test-ops-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": stack.bootstrap_servers, "group.id": group})
    try:
        base = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()
    for n in range(20):
        producer.produce(topic, key=f"k{n}".encode(), value=f"record {n}".encode(), partition=0)
    producer.flush(10)
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, base + 5)])]
                                       )[group].result(timeout=30)
    yield group, topic, base
    admin.delete_consumer_groups([group])[group].result(timeout=30)


async def _drop_slot_and_publication(settings: Settings, ident: str) -> None:
    """Drop the slot once the deleted connector's task let go of it, then the publication."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        async def dropped() -> bool:
            await conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                               "WHERE slot_name = $1 AND NOT active", ident)
            assert not await conn.fetchval("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", ident)
            return True

        await eventually_async(dropped, timeout_s=30)
        await conn.execute(f'DROP PUBLICATION IF EXISTS "{ident}"')  # a name this fixture made
    finally:
        await conn.close()


@pytest.fixture
def failing_connector(stack: Settings) -> Iterator[tuple[str, str]]:
    """A copy of catalog-outbox under a test name whose publication does not exist and may not be made
    by Debezium: its task FAILS at start. Yields (name, publication); deleted with its slot after."""
    name = f"test-ops-connect-{uuid.uuid4().hex[:8]}"
    ident = name.replace("-", "_")
    doc = json.loads((CONNECTORS_DIR / "catalog-outbox.json").read_text())
    config = {**doc["config"], "slot.name": ident, "publication.name": ident, "publication.autocreate.mode": "disabled"}
    client = ConnectClient(stack.connect_url)
    client.put(Connector(name, config))
    yield name, ident
    client.delete(name)
    client.close()
    asyncio.run(_drop_slot_and_publication(stack, ident))


@pytest.fixture
def running_monitor(ops_settings: Settings) -> Iterator[Callable[[list[str]], Monitor]]:
    """``running_monitor(saga_topics)``: a monitor over those topics (from now on) publishing its stuck orders
    where the console of ``ops_settings`` reads them; stopped afterwards."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start(saga_topics: list[str]) -> Monitor:
        monitor = Monitor(ops_settings.model_copy(update=FAST_MONITOR), registry=CollectorRegistry(),
                          saga_topics=saga_topics, heartbeat=False, lag=False, dead_letter=[], stock_changelog=None,
                          since_ms=now_ms())
        stop = threading.Event()
        thread = threading.Thread(target=monitor.run, args=(stop,), name="test-console-monitor", daemon=True)
        thread.start()
        running.append((stop, thread))
        eventually(monitor.saga_registered.is_set, 30, what="the monitor's saga history read")
        return monitor

    yield start
    for stop, thread in running:
        stop.set()
        thread.join(60)
