"""Two stacks on one machine never meet: a second checkout's stack beside the suite's, as a developer runs it.

The second stack has its own home and every port shifted (free ports, search in OpenSearch's 9200-9299
range). It is brought up by two ``shopflow stack up`` calls at once, and used by the tests below in
file order: what one stack is given is absent from the other; a red index and missing topics are
reported by ``status`` with their repair; an ``up`` killed while a server starts leaves no orphan.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from polling import eventually

from shopflow.deploy.servers import Search
from shopflow.deploy.stack import all_servers
from shopflow.deploy.system_servers import Postgres
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings

pytestmark = pytest.mark.integration

SHOPFLOW = [sys.executable, "-m", "shopflow.cli"]
NOTE = {"type": "record", "name": "Note", "namespace": "shopflow.test", "fields": [{"name": "n", "type": "long"}]}


def _free_port(candidates: range | None = None) -> int:
    for port in candidates or [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in {candidates}")


class SecondStack:
    """A stack in its own home on shifted ports, driven through the CLI as a developer would."""

    concurrent_ups: list[tuple[int, str]]  # (exit code, output) of the two `stack up` that brought it up

    def __init__(self, home: Path, main: Settings):
        home.mkdir(parents=True)
        # The jars are shared (read-only); nothing else is.
        (home / "cache").symlink_to(main.cache_dir.resolve(), target_is_directory=True)
        ports = {name: _free_port() for name in Settings.model_fields
                 if name.endswith("_port") and name not in ("search_port", "worker_port", "api_port")}
        ports["search_port"] = _free_port(range(9201, 9300))
        self.values = {"home": str(home), **ports, "postgres_password": uuid.uuid4().hex}
        self.settings = Settings(**self.values)
        self.env = {**os.environ, **{f"SHOPFLOW_{k.upper()}": str(v) for k, v in self.values.items()}}

    def shopflow(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*SHOPFLOW, *args], env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*SHOPFLOW, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def status(self) -> tuple[int, dict]:
        done = self.shopflow("stack", "status", "--json", check=False)
        return done.returncode, json.loads(done.stdout)

    def processes(self) -> list[psutil.Process]:
        """Every process working in or naming one of this stack's folders."""
        folders = [str(self.settings.home.resolve()), str(Postgres("postgres", self.settings).data_dir)]
        found = []
        for p in psutil.process_iter(["cmdline", "cwd"]):
            texts = [*(p.info["cmdline"] or []), p.info["cwd"] or ""]
            if any(folder in text for folder in folders for text in texts):
                found.append(p)
        return found


@pytest.fixture(scope="module")
def second_stack(stack, tmp_path_factory):
    other = SecondStack(tmp_path_factory.mktemp("second-checkout") / ".shopflow", stack)
    both = [other.spawn("stack", "up"), other.spawn("stack", "up")]
    other.concurrent_ups = [(p.wait(600), p.stdout.read()) for p in both]
    yield other
    other.shopflow("stack", "down", check=False)


def test_two_concurrent_ups_end_with_one_stack_and_no_error(second_stack):
    outputs = [out for _, out in second_stack.concurrent_ups]
    print("\n".join(f"--- stack up #{i + 1} ---\n{out}" for i, out in enumerate(outputs)))

    assert [rc for rc, _ in second_stack.concurrent_ups] == [0, 0], outputs
    servers = [server.name for server in all_servers(second_stack.settings)]
    assert sorted(out.strip().splitlines()[-1].split("(")[1] for out in outputs) == [
        "0 started)", f"{len(servers)} started)"]
    waited = next(out for out in outputs if "0 started" in out)
    assert "the stack is busy: held by pid" in waited
    rc, status = second_stack.status()
    assert [(s["name"], s["state"]) for s in status["servers"]] == [(name, "up") for name in servers]
    for server in status["servers"]:  # one process per server, the one its pid file names
        holders = {c.pid for c in psutil.net_connections("inet")
                   if c.laddr and c.laddr.port == server["port"] and c.status == psutil.CONN_LISTEN}
        assert len(holders) == 1


def _give(settings: Settings, name: str) -> None:
    """One of each thing a stack holds, named ``name``: an index, a topic, a connector, a schema."""
    httpx.put(f"{settings.search_url}/{name}", timeout=30).raise_for_status()
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})  # alive until the topic is made
    [future] = admin.create_topics([NewTopic(name, 1, 1)]).values()
    future.result(30)
    httpx.post(f"{settings.connect_url}/connectors", timeout=30, json={
        "name": name, "initial_state": "STOPPED",
        "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                   "file": "/dev/null", "topic": name}}).raise_for_status()
    registry = SchemaRegistry(settings.registry_url)
    registry.register(f"{name}-value", NOTE)
    registry.close()


def _holds(settings: Settings, name: str) -> dict[str, bool]:
    registry = SchemaRegistry(settings.registry_url)
    try:
        return {
            "index": httpx.head(f"{settings.search_url}/{name}", timeout=10).status_code == 200,
            "topic": name in AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(
                timeout=10).topics,
            "connector": name in httpx.get(f"{settings.connect_url}/connectors", timeout=10).json(),
            "schema": f"{name}-value" in registry.subjects(),
        }
    finally:
        registry.close()


def _identity(settings: Settings) -> dict[str, object]:
    search = httpx.get(f"{settings.search_url}/_nodes/transport", timeout=10).json()
    return {
        "search cluster": httpx.get(settings.search_url, timeout=10).json()["cluster_name"],
        "search nodes": [n["transport_address"] for n in search["nodes"].values()],
        "kafka cluster": AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(
            timeout=10).cluster_id,
        "connect on kafka": httpx.get(settings.connect_url, timeout=10).json()["kafka_cluster_id"],
    }


def test_two_stacks_share_nothing(stack, second_stack):
    first, second = stack, second_stack.settings
    names = {"first": f"iso-first-{uuid.uuid4().hex[:8]}", "second": f"iso-second-{uuid.uuid4().hex[:8]}"}

    try:
        _give(first, names["first"])
        _give(second, names["second"])
        seen = {(given, where): _holds(settings, names[given])
                for given in names for where, settings in (("first", first), ("second", second))}
        ids = {"first": _identity(first), "second": _identity(second)}
    finally:  # the suite's stack may be a developer's: leave no connector or index behind on it
        httpx.delete(f"{first.connect_url}/connectors/{names['first']}", timeout=30)
        httpx.delete(f"{first.search_url}/{names['first']}", timeout=30)
    print(f"\nfirst stack: {first.home} (ports {first.kafka_port}, {first.search_port}, ...)"
          f"\nsecond stack: {second.home} (ports {second.kafka_port}, {second.search_port}, ...)")
    for (given, where), held in seen.items():
        print(f"given to the {given:<6} stack, seen on the {where:<6} stack: {held}")
    for which, identity in ids.items():
        print(f"{which:<6} stack: {identity}")

    for given in names:
        assert seen[(given, given)] == {"index": True, "topic": True, "connector": True, "schema": True}
        other = "second" if given == "first" else "first"
        assert seen[(given, other)] == {"index": False, "topic": False, "connector": False, "schema": False}
    assert ids["first"]["search cluster"] != ids["second"]["search cluster"]
    assert ids["first"]["search nodes"] == [f"127.0.0.1:{first.search_transport_port}"]
    assert ids["second"]["search nodes"] == [f"127.0.0.1:{second.search_transport_port}"]
    assert ids["first"]["kafka cluster"] != ids["second"]["kafka cluster"]
    for identity in ids.values():
        assert identity["connect on kafka"] == identity["kafka cluster"]


def test_a_red_index_and_missing_topics_are_reported_with_their_repair(second_stack):
    settings = second_stack.settings
    # A primary that cannot be placed: what a lost shard copy looks like to the cluster.
    # wait_for_active_shards=0: the primary will never start, so creating it must not wait for it.
    httpx.put(f"{settings.search_url}/products", params={"wait_for_active_shards": "0"}, timeout=30, json={"settings": {
        "index.routing.allocation.require._name": "no-such-node", "number_of_replicas": 0}}).raise_for_status()

    rc, status = second_stack.status()

    assert rc == 2, status  # every server up, the data not healthy
    assert all(s["state"] == "up" for s in status["servers"])
    by_server: dict[str, list[dict]] = {}
    for problem in status["problems"]:
        by_server.setdefault(problem["server"], []).append(problem)
    [red] = by_server["search"]
    assert red["what"].startswith("index products is red") and "shopflow search rebuild" in red["fix"]
    assert any(p["what"] == "topic orders is missing" and "shopflow topics apply" in p["fix"]
               for p in by_server["kafka"])
    httpx.delete(f"{settings.search_url}/products", timeout=30).raise_for_status()


def test_an_up_killed_while_search_starts_leaves_no_orphan(second_stack):
    from shopflow.deploy.stack import Stack

    settings = second_stack.settings
    Stack(settings, progress=lambda line: None)._stop(Search("search", settings))
    pid_file = settings.run_dir / "search.json"
    interrupted = second_stack.spawn("stack", "up")
    eventually(lambda: pid_file.exists(), timeout_s=120, what="search spawned and its pid recorded")
    interrupted.send_signal(signal.SIGKILL)  # as a CI timeout does: no cleanup of any kind
    interrupted.wait(10)

    _, status = second_stack.status()
    search = next(s for s in status["servers"] if s["name"] == "search")
    assert search["state"] in ("starting", "up") and search["pid"] and "held by" not in search["note"], search

    again = second_stack.shopflow("stack", "up")
    assert "stack up in" in again.stderr
    _, status = second_stack.status()
    assert all(s["state"] == "up" for s in status["servers"])
    searches = [p for p in second_stack.processes() if "OpenSearchRunner" in " ".join(p.cmdline())]
    assert [p.pid for p in searches] == [next(s["pid"] for s in status["servers"] if s["name"] == "search")]

    second_stack.shopflow("stack", "down")
    assert second_stack.processes() == []
