"""Helpers of the catalog tests (a module of its own: test folders here are not packages)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class RunningIndexer:
    thread: threading.Thread
    stop: threading.Event
    batches: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def wait_until(check: Callable[[], T], timeout_s: float = 30.0, *, what: str = "condition",
               indexer: RunningIndexer | None = None) -> T:
    """Poll ``check`` until it returns something truthy; fail with the last value after the timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        if indexer is not None and indexer.errors:
            raise AssertionError(f"the indexer died: {indexer.errors[0]!r}")
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not met in {timeout_s}s (last: {last!r})")
