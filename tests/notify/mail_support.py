"""A throwaway mailpit of its own (the stack's build, its own home, password and free ports) that a
test may stop and start at will, e.g. "SMTP down, then back": the stack's own mail server is shared
by every test session and is never stopped by a test."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from polling import eventually

from shopflow.deploy.mail_server import MailServer
from shopflow.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandaloneMailServer:
    """``with StandaloneMailServer(stack, tmp_path) as mail:``; ``mail.settings`` point at it; ``stop``, ``start``."""

    def __init__(self, stack: Settings, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "cache").symlink_to(stack.cache_dir.resolve(), target_is_directory=True)
        # Only the mail server's ports and home differ: PostgreSQL, Kafka, ... stay the stack's.
        self.settings = stack.model_copy(update={"home": home, "mail_smtp_port": _free_port(),
                                                 "mail_api_port": _free_port()})
        self.server = MailServer("mail", self.settings, needs_java=False)
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.server.prepare()
        self._proc = subprocess.Popen(self.server.command(), env={**os.environ, **self.server.env},
                                      cwd=self.server.data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(self.server.ready, timeout_s=30, what="the standalone mailpit to be ready")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def __enter__(self) -> StandaloneMailServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
