"""Every ShopFlow process's Prometheus metrics: how a process serves them and how Prometheus finds it.

A process with a web server of its own (the edge, a Faust worker) serves ``/metrics`` there and calls
``register_target``; one without (the indexer, the projection, the monitor) calls ``expose``, which
serves the default registry on a port of its own. Registering writes a Prometheus file_sd file,
``<job>-<pid>.json`` in ``settings.targets_dir``, which the stack's Prometheus watches
(``file_sd_configs``): no hand-kept list of ports. The file is written atomically (Prometheus never
reads half of one), removed when the process exits cleanly, and the files of processes that died
without removing theirs (SIGKILL) are swept by the next process that registers. A file also holds
its process's start time (a ``__meta_`` label, which Prometheus drops after relabelling), so a file
whose pid was reused by another process is swept too.

Metric objects are module-level, on prometheus_client's default registry, defined where what they
count happens; hot loops increment children bound once (``Children``), never ``labels()`` per record.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from shopflow.settings import Settings

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "BatchFeed", "Children", "expose", "exposition",
           "register_target", "share_between_processes"]

# Seconds, 1 ms to 10 s: the range of a request, a batch of records or a commit here (the saga's p99
# target is 250 ms; a failover is seconds). One choice for every latency histogram, so they compare.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The registering process's start time (psutil's create_time), to tell it from a later one with its pid.
STARTED_LABEL = "__meta_shopflow_process_started"
# Start times are counted in clock ticks (10 ms): two readings of one process's agree well within this.
SAME_START_S = 0.05

# Every counter and histogram would also expose a ``_created`` series (its start time) that nothing here
# reads: twice the series for Prometheus to store. Read at each scrape, so this holds for all metrics.
disable_created_metrics()

# The files this process registered, removed at exit.
_registered: set[Path] = set()
_lock = threading.Lock()


class Children(dict[Any, Any]):
    """A labelled metric's children by label value (a tuple for several labels), each bound on first use.

    ``labels()`` takes a lock and builds a key per call; a dict lookup does not, so hot loops use this.
    """

    def __init__(self, metric: MetricWrapperBase):
        super().__init__()
        self.metric = metric

    def __missing__(self, key: Any) -> Any:
        child = self.metric.labels(*key) if isinstance(key, tuple) else self.metric.labels(key)
        self[key] = child
        return child


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _pid_of(path: Path) -> int | None:
    _, _, pid = path.stem.rpartition("-")
    return int(pid) if pid.isdigit() else None


def _started_of(path: Path) -> float | None:
    """The start time a target file records (None: an unreadable file, or one written without it)."""
    try:
        return float(json.loads(path.read_text())[0]["labels"][STARTED_LABEL])
    except (OSError, ValueError, LookupError, TypeError):
        return None


def _registrant_running(pid: int, started: float | None) -> bool:
    """Whether the process that wrote a file still runs: ``pid`` is alive and, when the file says when
    its process started, started then (not a later process that was given the same pid)."""
    if started is None:
        return _alive(pid)
    try:
        return abs(psutil.Process(pid).create_time() - started) < SAME_START_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process: alive, as _alive says
        return True


def sweep(settings: Settings) -> list[Path]:
    """Remove the target files of processes that are gone; the files removed."""
    removed = []
    for path in settings.targets_dir.glob("*.json"):
        pid = _pid_of(path)
        if pid is not None and not _registrant_running(pid, _started_of(path)):
            with contextlib.suppress(FileNotFoundError):  # another process swept it first
                path.unlink()
                removed.append(path)
    return removed


def scrape_address(settings: Settings, port: int, host: str | None = None) -> str:
    """Where Prometheus reaches a process listening on ``host`` (default ``settings.host``) and ``port``.

    A process bound to every address (0.0.0.0, ::) is scraped on ``settings.host``, where the stack's
    Prometheus runs; an IPv6 address is bracketed, as a URL wants it.
    """
    host = host or settings.host
    if host in ("0.0.0.0", "::"):
        host = settings.host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def register_target(settings: Settings, job: str, port: int, labels: dict[str, str] | None = None,
                    host: str | None = None) -> Path:
    """Make this process, serving ``/metrics`` on ``host:port`` (``host`` defaults to ``settings.host``),
    a target of the stack's Prometheus.

    ``job`` names what the process is (``edge``, ``worker``, ``indexer``...): Prometheus's ``job`` label.
    """
    if not job or "/" in job or job.startswith("."):
        raise ValueError(f"job {job!r}: name the process kind with a plain word, like 'worker'")
    folder = settings.targets_dir
    folder.mkdir(parents=True, exist_ok=True)
    sweep(settings)
    address = scrape_address(settings, port, host)
    started = f"{psutil.Process().create_time():.3f}"
    entry = [{"targets": [address],
              "labels": {**(labels or {}), "job": job, "instance": address, STARTED_LABEL: started}}]
    path = folder / f"{job}-{os.getpid()}.json"
    # Not named *.json until complete: Prometheus watches that pattern.
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(entry, indent=1))
    os.replace(partial, path)
    with _lock:
        first = not _registered
        _registered.add(path)
    if first:
        atexit.register(_unregister)
        _remove_on_sigterm()
    return path


def _unregister() -> None:
    with _lock:
        paths = list(_registered)
        _registered.clear()
    for path in paths:
        if _pid_of(path) == os.getpid():  # not a forked child's copy of the set
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _remove_on_sigterm() -> None:
    """SIGTERM with the default handler ends a process without ``atexit``: exit through ``SystemExit``
    instead (status 128 + SIGTERM, as a shell reports a process SIGTERM ended), so the atexit handlers
    run: this file's removal, the multiprocess folder's (``share_between_processes``).

    A process with a handler of its own installed first (Faust, the monitor, the indexer) keeps it.
    uvicorn installs its own while it serves, then puts this one back and raises the signal again.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        _unregister()  # now, should a handler on the way out swallow the SystemExit
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)


def expose(settings: Settings, job: str, port: int | None = None) -> int:
    """Serve the default registry's ``/metrics`` on ``settings.host:port`` (any free port when None or 0)
    from a daemon thread, register it as a target, and return the port."""
    try:
        server, _ = start_http_server(port or 0, addr=settings.host)
    except OSError as exc:
        raise OSError(f"metrics of {job}: cannot listen on {settings.host}:{port} ({exc.strerror}); "
                      "pass another port, or 0 for any free one") from None
    bound = int(server.server_address[1])
    register_target(settings, job, bound)
    return bound


def share_between_processes(settings: Settings, job: str) -> Path:
    """Multiprocess mode for processes forked or spawned from this one from now on (uvicorn's workers):
    each writes its values to files in a fresh folder, and any of them serves the sum (``exposition``).

    Only children see it: this process's own metrics were made before (prometheus_client picks its
    mode when imported). The folder goes when this process exits.
    """
    parent = settings.run_dir / "metrics"
    for left in parent.glob("*-*"):  # the folders of supervisors killed before their exit handlers ran
        pid = _pid_of(left)
        if pid is not None and not _alive(pid):
            shutil.rmtree(left, ignore_errors=True)
    folder = parent / f"{job}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def exposition(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The text exposition of ``registry``; in multiprocess mode, of every process sharing the folder."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder and registry is REGISTRY:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, folder)
    return generate_latest(registry)


@functools.cache
def _feed_metrics() -> tuple[Counter, Counter, Histogram]:
    # Made on first use: only the processes that run a feed show these families.
    return (
        Counter("shopflow_read_model_records_total", "Records a read-model feed handled, by feed and outcome "
                "(applied; stale or duplicate: the model had it already; dead-lettered; rejected).",
                ["feed", "outcome"]),
        Counter("shopflow_read_model_batches_total", "Batches a read-model feed applied and committed, by feed.",
                ["feed"]),
        Histogram("shopflow_read_model_batch_seconds", "Time from a batch's first record in hand to its offsets "
                  "committed, retries included, by feed.", ["feed"], buckets=LATENCY_BUCKETS),
    )


class BatchFeed:
    """The metrics of a consumer loop that applies batches of records to a read model (the search
    indexer's feeds, the orders projection): records by outcome, batches, batch time."""

    def __init__(self, feed: str):
        records, batches, seconds = _feed_metrics()
        self._records = Children(records)
        self._feed = feed
        self._batches = batches.labels(feed)
        self._seconds = seconds.labels(feed)

    def batch(self, seconds: float, outcomes: Mapping[str, int]) -> None:
        """One batch applied and committed in ``seconds``: how many of its records had each outcome."""
        self._batches.inc()
        self._seconds.observe(seconds)
        for outcome, count in outcomes.items():
            if count:
                self._records[(self._feed, outcome)].inc(count)
