"""How ``shopflow monitor`` ends (streams/monitor.py's ``main``), no servers: a monitor whose thread fails
ends with an error (status 1 through the CLI), one stopped on purpose ends cleanly."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from shopflow.settings import Settings
from shopflow.streams import monitor as monitor_module
from shopflow.streams.monitor import MonitorError, main


@pytest.fixture
def monitor_running(monkeypatch):
    """``monitor_running(run)``: ``main`` with a stand-in Monitor whose thread does ``run(stop)``; no Kafka,
    no metrics port, no signal handlers."""

    def install(run) -> None:
        class StandInMonitor:
            def __init__(self, settings: Settings, **_: object):
                self.saga_registered = threading.Event()
                self.feed = SimpleNamespace(progress=lambda: (0, 0), started_ms=0)

            def run(self, stop: threading.Event) -> None:
                run(stop)

        monkeypatch.setattr(monitor_module, "Monitor", StandInMonitor)
        monkeypatch.setattr(monitor_module, "AdminClient", lambda config: None)
        monkeypatch.setattr(monitor_module, "apply_topics", lambda admin: None)
        monkeypatch.setattr(monitor_module, "expose", lambda settings, job, port: 9999)
        monkeypatch.setattr(monitor_module, "stop_on_signals", threading.Event)

    return install


def test_a_monitor_thread_that_fails_ends_the_process_with_an_error(monitor_running):
    def fails(stop: threading.Event) -> None:
        raise RuntimeError("the broker went away")

    monitor_running(fails)

    with pytest.raises(MonitorError, match="stopped on an error: RuntimeError.*start `shopflow monitor` again"):
        main(Settings())


def test_a_monitor_stopped_on_purpose_ends_cleanly(monitor_running):
    monitor_running(lambda stop: stop.set())

    assert main(Settings()) is None
