"""Fixtures shared by the whole suite.

Two speeds, as in Quix Streams' tests: unit and replay tests need nothing running; tests marked
``integration`` use the ``stack`` fixture, which brings the real servers up once per session
(or reuses a running stack) and stops at the end only what it started. A server that does not
come up fails the session with its log tail: nothing is skipped.

Waiting for something to happen is ``eventually(check)`` (and ``eventually_async``) from
``tests/polling.py``, built on tenacity: a test polls a condition with a timeout, never sleeps for a
guessed time. This folder is on ``sys.path``: tests import such helper modules by name.
Workers are started by ``shopflow.launch``, ready when their ``/health/`` lists partitions they hold.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from polling import eventually

from shopflow.launch import ShopflowProcess, worker_health
from shopflow.settings import Settings, get_settings

# --- the real servers -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def stack() -> Settings:
    from confluent_kafka.admin import AdminClient

    from shopflow.deploy.stack import Stack
    from shopflow.topologies.apply import apply_topics

    st = Stack(get_settings(), progress=lambda line: print(line, flush=True))
    started = st.up()
    # A fresh broker has no topics (auto-creation is off): the catalog's come first, as in a deployment.
    apply_topics(AdminClient({"bootstrap.servers": st.settings.bootstrap_servers}))
    yield st.settings
    if started:
        st.servers = [s for s in st.servers if s.name in started]
        st.down()


@pytest.fixture(scope="session")
def pg_schema_factory(stack):
    """``pg_schema_factory(prefix)``: a throwaway PostgreSQL schema, dropped at the end of the session."""
    import asyncio

    import asyncpg

    made: list[str] = []

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        asyncio.run(run(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        return name

    yield make
    for name in made:
        asyncio.run(run(f'DROP SCHEMA "{name}" CASCADE'))


@pytest.fixture(scope="session")
def registry(stack):
    from shopflow.schemas.registry import SchemaRegistry

    client = SchemaRegistry(stack.registry_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def codec(registry):
    from shopflow.schemas.codec import AvroCodec

    return AvroCodec(registry)


@pytest.fixture(scope="session")
def admin(stack):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": stack.bootstrap_servers})


@pytest.fixture(scope="session")
def topic_factory(admin):
    """Make a fresh topic per call (``topic_factory(partitions=3)``); all are deleted at the end."""
    from confluent_kafka.admin import NewTopic

    made: list[str] = []

    def make(name: str = "t", partitions: int = 1, config: dict | None = None) -> str:
        topic = f"test-{name}-{uuid.uuid4().hex[:8]}"
        futures = admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})])
        futures[topic].result(timeout=30)
        made.append(topic)
        return topic

    yield make
    if made:
        for f in admin.delete_topics(made).values():
            f.result(timeout=30)


@pytest.fixture
def consume(stack):
    """``consume(topic, n)``: the first n messages of a topic, read from the beginning."""
    from confluent_kafka import Consumer

    consumers = []

    def read(topic: str, n: int, timeout_s: float = 30.0):
        c = Consumer({"bootstrap.servers": stack.bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumers.append(c)
        c.subscribe([topic])
        out = []

        def read_all() -> list:
            msg = c.poll(0.5)  # waits for the next message itself: no pause between tries
            if msg is not None and not msg.error():
                out.append(msg)
            assert len(out) == n, f"read {len(out)} of {n} messages from {topic} in {timeout_s}s"
            return out

        return eventually(read_all, timeout_s=timeout_s, interval_s=0)

    yield read
    for c in consumers:
        c.close()


@pytest.fixture
def producer(stack):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": stack.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    yield p
    p.flush(10)
    p.close()  # else its threads retry the broker after the stack is down (noise after the summary)


# --- Faust workers, shared by the saga's broker tests and the edge's cart tests ----------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workers:
    """``shopflow worker`` processes sharing the partitions: started, killed and restarted by port."""

    def __init__(self, settings: Settings, logs: Path):
        self.settings, self.logs = settings, logs
        self.procs: dict[int, ShopflowProcess] = {}

    def __call__(self, count: int = 1, **overrides: Any) -> list[int]:
        ports = [_free_port() for _ in range(count)]
        for port in ports:
            self.start(port, **overrides)
        self.wait_ready(ports)
        return ports

    def log(self, port: int) -> Path:
        return self.logs / f"worker-{port}.log"

    def start(self, port: int, **overrides: Any) -> None:
        """Start (or start again, on its data dir) the worker of this web port; does not wait."""
        if port in self.procs:
            self.procs[port].close()  # a killed worker's: its log file
        self.procs[port] = ShopflowProcess(
            f"worker :{port}", ["worker", "--web-port", str(port)], self.log(port),
            health=worker_health(self.settings, port),
            env={f"SHOPFLOW_{k.upper()}": str(v) for k, v in overrides.items()})
        self.procs[port].spawn()

    def wait_ready(self, ports: list[int]) -> None:
        """Until each worker's /health/ answers 200 listing partitions it holds (joined, tables restored)."""
        for port in ports:
            self.procs[port].wait_ready()

    def kill(self, port: int) -> None:
        """kill -9: no flush, no commit, no goodbye to the group."""
        self.procs[port].kill()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.close()


@pytest.fixture(scope="session")
def worker_factory(stack, tmp_path_factory):
    """``worker_factory(n, **settings)``: n `shopflow worker` processes sharing the partitions, ready."""
    workers = Workers(stack, tmp_path_factory.mktemp("worker"))
    yield workers
    workers.stop_all()


# The step timeouts of the workers the saga's broker tests share; scenarios that advance the clock
# declare these in `given.timeouts`.
TEST_TIMEOUTS = {"payment_timeout_s": 3, "reservation_timeout_s": 10, "cart_idle_s": 12}


@pytest.fixture(scope="session")
def suite_timeouts() -> dict:
    return dict(TEST_TIMEOUTS)


@pytest.fixture(scope="session")
def saga_workers(worker_factory) -> list[str]:
    """Two workers sharing the partitions, started once per session; their base URLs."""
    return [f"http://127.0.0.1:{port}" for port in worker_factory(2, **TEST_TIMEOUTS)]
