"""The metrics helper: target files Prometheus discovers, their removal at exit (SIGTERM included) and
sweep after a crash or a reused pid, ``expose`` for processes without a web server, and the read-model
feed metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from metrics_lint import promtool_check, total
from prometheus_client import Counter

from shopflow.metrics import (
    MULTIPROC_ENV,
    STARTED_LABEL,
    BatchFeed,
    Children,
    expose,
    register_target,
    share_between_processes,
    sweep,
)
from shopflow.settings import Settings, get_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return get_settings().model_copy(update={"home": tmp_path})


def _registering_process(settings: Settings, job: str = "probe", port: int = 9999) -> subprocess.Popen:
    """A Python process that registers a target and shares its metrics with children to come, says its
    file's path and its metrics folder (a line each), then waits for its stdin to close."""
    code = ("import sys; from pathlib import Path; from shopflow.metrics import register_target, "
            "share_between_processes; from shopflow.settings import get_settings; "
            f"s = get_settings().model_copy(update={{'home': Path({str(settings.home)!r})}}); "
            f"print(register_target(s, {job!r}, {port}), flush=True); "
            f"print(share_between_processes(s, {job!r}), flush=True); sys.stdin.read()")
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _waiting_process() -> subprocess.Popen:
    """A Python process that registers nothing and waits for its stdin to close."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def _target_file_of(settings: Settings, pid: int, started: str | None) -> Path:
    """A target file as a process ``pid`` started at ``started`` would have written it."""
    labels = {"job": "edge", "instance": "127.0.0.1:8000"} | ({STARTED_LABEL: started} if started else {})
    path = settings.targets_dir / f"edge-{pid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"targets": ["127.0.0.1:8000"], "labels": labels}]))
    return path


def test_a_target_file_names_the_process_for_prometheus(settings: Settings) -> None:
    path = register_target(settings, "worker", 6066, {"role": "saga"})

    assert path == settings.targets_dir / f"worker-{os.getpid()}.json"
    [entry] = json.loads(path.read_text())
    started = entry["labels"].pop(STARTED_LABEL)
    assert entry == {"targets": [f"{settings.host}:6066"],
                     "labels": {"role": "saga", "job": "worker", "instance": f"{settings.host}:6066"}}
    assert float(started) == pytest.approx(psutil.Process().create_time(), abs=0.01)
    assert not list(settings.targets_dir.glob("*.tmp"))  # written aside, then renamed


@pytest.mark.parametrize(("bound", "scraped"), [
    ("127.0.0.2", "127.0.0.2:8000"),  # the host the process binds, not the configured one
    ("0.0.0.0", "{configured}:8000"),  # every address: scraped where Prometheus runs
    ("::1", "[::1]:8000"),
    (None, "{configured}:8000"),
])
def test_a_target_is_the_address_the_process_binds(settings: Settings, bound: str | None, scraped: str) -> None:
    path = register_target(settings, "edge", 8000, host=bound)

    [entry] = json.loads(path.read_text())
    assert entry["targets"] == [scraped.format(configured=settings.host)]
    assert entry["labels"]["instance"] == entry["targets"][0]


def test_a_job_that_is_not_a_plain_word_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="plain word"):
        register_target(settings, "../etc", 1)


def test_the_file_goes_when_the_process_exits(settings: Settings) -> None:
    process = _registering_process(settings)
    assert process.stdout is not None
    path = Path(process.stdout.readline().strip())
    assert path.exists()

    process.communicate("")  # stdin closed: the process ends normally

    assert process.returncode == 0
    assert not path.exists()


def test_sigterm_ends_the_process_through_its_exit_handlers_with_sigterms_status(settings: Settings) -> None:
    # Given a process with a target file and a metrics folder, both removed by exit handlers
    process = _registering_process(settings)
    assert process.stdout is not None
    path, folder = Path(process.stdout.readline().strip()), Path(process.stdout.readline().strip())
    assert path.exists() and folder.is_dir()

    # When it gets SIGTERM
    process.send_signal(signal.SIGTERM)
    process.wait(10)

    # Then it ends as a shell reports a SIGTERM (128 + 15), and its exit handlers removed both
    assert process.returncode == 128 + signal.SIGTERM
    assert not path.exists()
    assert not folder.exists()


def test_the_files_of_dead_processes_are_swept_when_another_registers(settings: Settings) -> None:
    process = _registering_process(settings, "edge", 8000)
    assert process.stdout is not None
    path = Path(process.stdout.readline().strip())
    process.kill()  # no atexit, no signal handler: the file stays
    process.wait(10)
    assert path.exists()

    mine = register_target(settings, "indexer", 1234)

    assert not path.exists()
    assert mine.exists()
    assert sweep(settings) == []


def test_a_file_whose_pid_now_belongs_to_another_process_is_swept(settings: Settings) -> None:
    # Given a running process, and target files naming its pid
    process = _waiting_process()
    try:
        started = psutil.Process(process.pid).create_time()
        reused = _target_file_of(settings, process.pid, f"{started - 3600:.3f}")  # written by an earlier one
        stale = sweep(settings)
        own = _target_file_of(settings, process.pid, f"{started:.3f}")
        kept = sweep(settings)
        _target_file_of(settings, process.pid, None)  # a file written before start times were recorded
        old_format = sweep(settings)
    finally:
        process.communicate("")

    # Then only the file of a process that started at another time is swept while the pid runs
    assert stale == [reused]
    assert kept == [] and own.exists()
    assert old_format == []

def test_expose_serves_the_registry_on_a_free_port_and_registers_it(settings: Settings) -> None:
    port = expose(settings, "probe")

    text = httpx.get(f"http://{settings.host}:{port}/metrics", timeout=5).text
    assert "process_cpu_seconds_total" in text
    promtool_check(text)
    target = json.loads((settings.targets_dir / f"probe-{os.getpid()}.json").read_text())
    assert target[0]["targets"] == [f"{settings.host}:{port}"]


def test_expose_on_a_taken_port_says_what_to_do(settings: Settings) -> None:
    port = expose(settings, "probe")

    with pytest.raises(OSError, match="pass another port, or 0"):
        expose(settings, "probe", port)


def test_processes_sharing_metrics_get_a_fresh_folder_and_dead_ones_folders_go(settings, monkeypatch):
    monkeypatch.setenv(MULTIPROC_ENV, "restored after the test")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(10)
    left = settings.run_dir / "metrics" / f"edge-{ended.pid}"
    (left / "counter_1.db").parent.mkdir(parents=True)

    folder = share_between_processes(settings, "edge")

    assert os.environ[MULTIPROC_ENV] == str(folder)
    assert folder.is_dir() and not list(folder.iterdir())
    assert not left.exists()


def test_children_are_bound_once_per_label_value() -> None:
    counter = Counter("shopflow_test_children_total", "A counter of this test.", ["topic"])
    children = Children(counter)

    children["orders"].inc()
    children["orders"].inc(2)

    assert children["orders"] is counter.labels("orders")
    assert counter.labels("orders")._value.get() == 3


def test_a_feed_counts_its_batches_and_records_by_outcome() -> None:
    from shopflow.metrics import exposition

    feed = BatchFeed("test-feed")

    feed.batch(0.02, {"applied": 3, "stale": 1, "dead-lettered": 0})
    feed.batch(0.5, {"applied": 2})

    text = exposition().decode()
    assert total(text, "shopflow_read_model_records_total", feed="test-feed", outcome="applied") == 5
    assert total(text, "shopflow_read_model_records_total", feed="test-feed", outcome="dead-lettered") == 0
    assert total(text, "shopflow_read_model_batches_total", feed="test-feed") == 2
    assert total(text, "shopflow_read_model_batch_seconds_count", feed="test-feed") == 2
    promtool_check(text)
