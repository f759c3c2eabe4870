"""The launcher: status, idempotent up, and each start-up fault giving a reason and leaving nothing behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from shopflow.deploy import StackError
from shopflow.deploy.fetch import BUNDLES, Bundle, fetch
from shopflow.deploy.servers import Connect
from shopflow.deploy.stack import Stack
from shopflow.deploy.system_servers import Redis
from shopflow.settings import Settings

SHOPFLOW = [sys.executable, "-m", "shopflow.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(home: Path) -> list[psutil.Process]:
    """Processes whose command line names the given stack home."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(str(home) in part for part in p.info["cmdline"] or []):
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
    out = subprocess.run([*SHOPFLOW, "stack", "status", "--json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)

    assert [r["name"] for r in rows] == ["postgres", "redis", "kafka", "registry", "connect", "search"]
    for row in rows:
        assert row["up"] is True, row
        assert row["pid"] > 0 and row["rss_mb"] > 0 and row["version"]


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
