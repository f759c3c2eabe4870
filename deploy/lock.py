"""The stack's lock: ``stack up`` and ``stack down`` on one home run one at a time.

An advisory ``flock`` on ``<home>/run/stack.lock``: the kernel releases it when its holder exits,
even by SIGKILL, so a killed ``up`` never leaves the stack locked. The holder writes who it is into
the file; a second caller says whom it waits for, and gives up with that name after ``timeout_s``.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TextIO

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from shopflow.deploy import StackError


class StackLock:
    def __init__(self, run_dir: Path, progress: Callable[[str], None], timeout_s: float):
        self.path = run_dir / "stack.lock"
        self.progress = progress
        self.timeout_s = timeout_s
        self._file: TextIO | None = None

    def _try(self) -> bool:
        assert self._file is not None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it."""
        try:
            note = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            note = {}
        if not note:
            return "another process"
        since = time.strftime("%H:%M:%S", time.localtime(note["since"]))
        return f"pid {note['pid']} ({note['command']}, since {since})"

    def __enter__(self) -> StackLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = file = open(self.path, "a+")  # noqa: SIM115 (held until __exit__)
        if not self._try():
            self.progress(f"wait   the stack is busy: held by {self.holder()} ...")
            try:
                Retrying(retry=retry_if_result(lambda got: not got), wait=wait_fixed(0.5),
                         stop=stop_after_delay(self.timeout_s))(self._try)
            except RetryError:
                file.close()
                raise StackError(
                    f"the stack in {self.path.parent.parent} is still held by {self.holder()} after "
                    f"{self.timeout_s:.0f}s: wait for that command to finish, or stop it, then retry"
                ) from None
        file.seek(0)
        file.truncate()
        program = Path(sys.argv[0]).name
        command = " ".join(["shopflow" if program == "__main__.py" else program, *sys.argv[1:]])[:120]
        note = {"pid": os.getpid(), "command": command, "since": time.time()}
        file.write(json.dumps(note))
        file.flush()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._file is not None
        self._file.truncate(0)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
