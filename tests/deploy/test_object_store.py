"""The stack's object store (versitygw): built and pinned, started with this stack's generated credentials,
its bucket created by the project and private, and never mistaken for another checkout's gateway."""

from __future__ import annotations

import os
import socket
import subprocess

import httpx
import pytest
from polling import eventually

from shopflow.deploy import StackError
from shopflow.deploy.fetch import VERSIONS
from shopflow.deploy.object_store import ObjectStore, binary_dir
from shopflow.deploy.stack import Stack, all_servers
from shopflow.files import credentials, s3_client
from shopflow.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _store(settings: Settings) -> ObjectStore:
    [store] = [s for s in all_servers(settings) if isinstance(s, ObjectStore)]
    return store


def _settings_of(home, **values) -> Settings:
    """Another checkout's settings: its own home, and not this checkout's secrets file."""
    return Settings(_env_file=None, home=home, postgres_password="unused", **values)  # type: ignore[call-arg]


def test_the_gateway_is_pinned_and_its_secret_stays_out_of_its_command_line(tmp_path):
    settings = _settings_of(tmp_path / "home")
    store = _store(settings)

    store.prepare()

    assert store.version == f"versitygw {VERSIONS['go']['versitygw']}"
    access, secret = credentials(settings)
    assert store.env == {"ROOT_ACCESS_KEY": access, "ROOT_SECRET_KEY": secret}
    assert secret not in " ".join(store.command())
    assert f"{settings.host}:{settings.object_store_port}" in store.command()
    # Generated once into the home's secrets file: a second read gives the same pair.
    assert credentials(_settings_of(settings.home)) == (access, secret)


def test_a_failed_build_leaves_nothing_half_built_and_says_what_to_do(tmp_path, monkeypatch):
    settings = _settings_of(tmp_path / "home")
    store = _store(settings)
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: subprocess.CompletedProcess(
        a, 1, "", "go: github.com/versity/versitygw@v1.8.0: connection refused"))

    with pytest.raises(StackError, match="could not build versitygw .*connection refused.*stack fetch"):
        store.fetch()

    assert not store.fetched()
    assert not binary_dir(settings).with_name(binary_dir(settings).name + ".partial").exists()


@pytest.mark.integration
def test_the_stack_runs_the_store_with_its_private_bucket(stack):
    status = {s.name: s for s in Stack(stack, progress=lambda _: None).status()}["object_store"]
    assert status.up and status.rss_mb > 0, status
    print(f"\nobject store {status.version}: pid {status.pid}, {status.rss_mb} MB (PSS)")

    client = s3_client(stack)
    assert stack.object_store_bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    client.put_object(Bucket=stack.object_store_bucket, Key="test/probe.txt", Body=b"probe")
    try:
        anonymous = httpx.get(f"{stack.object_store_url}/{stack.object_store_bucket}/test/probe.txt", timeout=5)
        assert anonymous.status_code == 403  # private: reached only with credentials or a presigned URL
    finally:
        client.delete_object(Bucket=stack.object_store_bucket, Key="test/probe.txt")


@pytest.mark.integration
def test_another_checkouts_gateway_is_not_taken_for_this_stacks(stack, tmp_path):
    # Given another checkout's gateway (its own home, credentials and port) from the same build
    other = _settings_of(tmp_path / "other", object_store_port=_free_port())
    other.home.mkdir()
    (other.home / "cache").symlink_to(stack.cache_dir.resolve(), target_is_directory=True)
    theirs = _store(other)
    theirs.prepare()
    proc = subprocess.Popen(theirs.command(), env={**os.environ, **theirs.env}, cwd=theirs.data_dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert eventually(theirs.ready, timeout_s=30)
        # When this stack's probe is pointed at its port, Then it is not this stack's server
        mine_there = _store(stack.model_copy(update={"object_store_port": other.object_store_port}))
        assert not mine_there.ready()
    finally:
        proc.terminate()
        proc.wait(10)
