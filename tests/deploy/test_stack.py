"""The launcher: status, idempotent up, and each start-up fault giving a reason and leaving nothing behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
from polling import eventually

from shopflow.deploy import StackError
from shopflow.deploy.fetch import BUNDLES, Bundle, fetch
from shopflow.deploy.processes import RunState
from shopflow.deploy.servers import Connect, port_open
from shopflow.deploy.stack import Stack, all_servers
from shopflow.deploy.system_servers import Redis
from shopflow.settings import Settings

SHOPFLOW = [sys.executable, "-m", "shopflow.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(home: Path) -> list[psutil.Process]:
    """Processes whose command line names the given stack home or that work in a folder under it
    (redis-server rewrites its command line to "redis-server host:port")."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        texts = [*(p.info["cmdline"] or []), p.info["cwd"] or ""]
        if p.pid != os.getpid() and any(str(home.resolve()) in part or str(home) in part for part in texts):
            found.append(p)
    return found


@pytest.fixture
def redis_only(tmp_path):
    """A one-server stack (Redis) in its own home and port: start-up faults without the big stack."""

    def make(server_cls=Redis) -> Stack:
        settings = Settings(home=tmp_path / "home", redis_port=_free_port(), postgres_password="unused",
                            start_timeout_s=20)
        st = Stack(settings, progress=lambda line: None)
        st.servers = [server_cls("redis", settings, needs_java=False)]
        return st

    yield make


@pytest.mark.integration
def test_status_json_reports_every_server_up(stack):
    done = subprocess.run([*SHOPFLOW, "stack", "status", "--json"], capture_output=True, text=True)
    report = json.loads(done.stdout)

    assert done.returncode == (2 if report["problems"] else 0)  # 1 only when a server is down
    assert [r["name"] for r in report["servers"]] == [s.name for s in all_servers(stack)]
    for row in report["servers"]:
        assert row["up"] is True and row["state"] == "up", row
        assert row["pid"] > 0 and row["rss_mb"] > 0 and row["version"]
    for problem in report["problems"]:
        assert problem["fix"], problem  # each finding names its repair


@pytest.mark.integration
def test_up_twice_starts_nothing_the_second_time(stack):
    assert Stack(stack, progress=lambda line: None).up() == []


def test_up_then_down_leaves_no_process(redis_only):
    st = redis_only()
    assert st.up() == ["redis"]
    assert [r.up for r in st.status()] == [True]

    st.down()

    assert _processes_under(st.settings.home) == []
    assert [r.up for r in st.status()] == [False]


def test_a_taken_port_is_refused_with_what_to_do(redis_only):
    st = redis_only()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", st.settings.redis_port))
        squatter.listen()
        with pytest.raises(StackError, match=rf"port {st.settings.redis_port} .* already in use.*SHOPFLOW_REDIS_PORT"):
            st.up()

    assert _processes_under(st.settings.home) == []


class _DyingRedis(Redis):
    def command(self) -> list[str]:
        return [*super().command(), "--no-such-option", "1"]


def test_a_server_dying_during_start_fails_with_its_log_tail(redis_only):
    st = redis_only(_DyingRedis)

    with pytest.raises(StackError, match=r"redis exited during start; see .*redis.log(.|\n)*no-such-option"):
        st.up()

    assert _processes_under(st.settings.home) == []
    assert not (st.settings.run_dir / "redis.json").exists()


def test_missing_java_is_named_with_the_fix(redis_only, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StackError, match="Java is not installed: run `make setup`"):
        redis_only().check_java()


def test_a_failed_download_says_so_and_leaves_no_partial_folder(tmp_path):
    bundle = Bundle("kafka", "0.0.0-does-not-exist")
    env_path = os.environ["PATH"]

    with pytest.raises(StackError, match="could not fetch kafka 0.0.0-does-not-exist from Maven Central"):
        fetch(bundle, tmp_path)

    assert list(tmp_path.iterdir()) == []
    assert os.environ["PATH"] == env_path


def test_fetch_says_nothing_when_every_server_is_there(redis_only):
    st = redis_only()
    said: list[str] = []
    st.progress = said.append

    st.fetch()

    assert said == []  # `make demo` and `make test` fetch on every run


def test_a_bundle_counts_as_fetched_once_its_copy_completed(tmp_path):
    settings = Settings(home=tmp_path, postgres_password="unused")
    connect = Connect("connect", settings)

    def copied(bundle: str) -> None:
        folder = BUNDLES[bundle].path(settings.cache_dir)
        folder.mkdir(parents=True)
        (folder / ".complete").write_text("done\n")

    assert not connect.fetched()
    copied("connect")
    assert not connect.fetched()  # Debezium's plugin still missing
    copied("debezium")
    assert connect.fetched()


# --- identity, the lock, interrupted starts ------------------------------------------------------------

def test_each_home_is_its_own_stack_and_search_never_looks_for_peers(tmp_path):
    from shopflow.deploy.servers import Search

    one = Settings(home=tmp_path / "one", search_transport_port=9377, postgres_password="unused")
    other = Settings(home=tmp_path / "other", postgres_password="unused")
    search = Search("search", one)

    search.prepare()

    assert one.stack_name != other.stack_name
    assert one.stack_name == Settings(home=tmp_path / "one" / ".." / "one", postgres_password="unused").stack_name
    yml = (search.data_dir / "node_1" / "config" / "opensearch.yml").read_text()
    assert "discovery.type: single-node" in yml and "transport.port: 9377" in yml
    assert search.command()[search.command().index("-clusterName") + 1] == one.stack_name


def test_a_second_up_waits_for_the_first_and_says_who_holds_the_stack(redis_only):
    from shopflow.deploy.lock import StackLock

    st = redis_only()
    said: list[str] = []
    st.progress = said.append
    result: list[list[str]] = []
    with StackLock(st.settings.run_dir, progress=lambda line: None, timeout_s=5):
        second = threading.Thread(target=lambda: result.append(st.up()))
        second.start()
        eventually(lambda: any(line.startswith("wait") for line in said), what="the second up to wait")
        assert result == [] and _processes_under(st.settings.home) == []  # nothing starts while held
    second.join(30)

    assert f"held by pid {os.getpid()}" in next(line for line in said if line.startswith("wait"))
    assert result == [["redis"]]
    st.down()


def test_a_held_stack_is_refused_after_the_timeout_naming_the_holder(redis_only):
    from shopflow.deploy.lock import StackLock

    st = redis_only()
    with StackLock(st.settings.run_dir, progress=lambda line: None, timeout_s=5), \
            pytest.raises(StackError, match=rf"still held by pid {os.getpid()} .* wait for that command"):
        StackLock(st.settings.run_dir, progress=lambda line: None, timeout_s=0.5).__enter__()


NEVER_READY_UP = """
import sys
from shopflow.deploy.stack import Stack, all_servers
from shopflow.deploy.system_servers import Redis
from shopflow.settings import Settings

class NeverReady(Redis):  # a server that hangs in its start: `up` waits on its probe until killed
    def ready(self):
        return False

settings = Settings(home=sys.argv[1], redis_port=int(sys.argv[2]), postgres_password="unused", start_timeout_s=600)
st = Stack(settings, progress=print)
st.servers = [NeverReady("redis", settings, needs_java=False)]
st.up()
"""


def test_an_up_killed_during_a_start_leaves_its_pid_file_and_the_next_up_and_down_clean_up(redis_only, tmp_path):
    st = redis_only()
    script = tmp_path / "never_ready_up.py"
    script.write_text(NEVER_READY_UP)
    interrupted = subprocess.Popen([sys.executable, str(script), str(st.settings.home), str(st.settings.redis_port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = st.settings.run_dir / "redis.json"
    eventually(lambda: pid_file.exists() and port_open("127.0.0.1", st.settings.redis_port),
               what="the server spawned and its pid recorded, its readiness still awaited")
    interrupted.kill()  # SIGKILL: no cleanup of any kind
    interrupted.wait(10)
    [orphan] = _processes_under(st.settings.home)

    assert [(r.state, r.pid) for r in st.status()] == [("up", orphan.pid)]  # known as this stack's
    assert st.up() == []  # the next up adopts it: the server it needed is there and answers
    st.down()
    assert _processes_under(st.settings.home) == []


def test_a_server_without_its_pid_file_is_recognised_adopted_and_stopped(redis_only):
    st = redis_only()
    st.up()
    [server] = _processes_under(st.settings.home)
    (st.settings.run_dir / "redis.json").unlink()  # what an `up` killed right after spawning leaves

    [row] = st.status()
    assert (row.state, row.pid) == ("up", server.pid) and "no pid file" in row.note
    said: list[str] = []
    st.progress = said.append
    assert st.up() == []
    assert any("adopted (pid" in line for line in said)
    assert RunState.load(st.settings.run_dir / "redis.json").pid == server.pid

    (st.settings.run_dir / "redis.json").unlink()
    assert st.down() == ["redis"]  # found by its marks alone
    assert _processes_under(st.settings.home) == []


def test_a_port_held_by_another_stack_is_named_as_that_stack(redis_only, tmp_path):
    mine = redis_only()
    other_settings = mine.settings.model_copy(update={"home": tmp_path / "other-home"})
    other = Stack(other_settings, progress=lambda line: None)
    other.servers = [Redis("redis", other_settings, needs_java=False)]
    other.up()
    try:
        [row] = mine.status()
        assert row.state == "down"
        assert f"the redis server of the ShopFlow stack in {other_settings.home.resolve()}" in row.note
        with pytest.raises(StackError, match=rf"already in use by the redis server of the ShopFlow stack in "
                                             rf"{other_settings.home.resolve()}"):
            mine.up()
    finally:
        other.down()


@pytest.mark.integration
def test_a_stack_aimed_at_another_stacks_ports_claims_none_of_its_servers(stack, tmp_path):
    # Every server, present and future: a checkout whose settings name the suite stack's ports.
    home = tmp_path / "other-checkout"
    home.mkdir()
    (home / "cache").symlink_to(stack.cache_dir.resolve(), target_is_directory=True)  # no download
    intruder = Stack(stack.model_copy(update={"home": home}), progress=lambda line: None)

    rows = intruder.status()

    assert [r.name for r in rows] == [s.name for s in intruder.servers]
    for row in rows:
        assert (row.state, row.pid) == ("down", None), row
        assert f"server of the ShopFlow stack in {stack.home.resolve()}" in row.note, row
    with pytest.raises(StackError, match=rf"port {stack.postgres_port} for postgres is already in use by the "
                                         rf"postgres server of the ShopFlow stack in {stack.home.resolve()}"):
        intruder.up()
    assert _processes_under(intruder.settings.home) == []
