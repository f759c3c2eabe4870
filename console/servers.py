"""The stack's servers as the overview shows them, read at most once per ``max_age_s`` (``ServerStatus``).

``deploy.stack.Stack.status()`` (the same answer as ``shopflow stack status``) probes every server,
~0.1 s each: most of an overview's time when read per page. Pages within a few seconds of each other
share one reading, and however many ask at once, one of them reads (the others wait for it); the page
says how old its reading is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from shopflow.deploy.stack import Stack
from shopflow.settings import Settings

MAX_AGE_S = 5.0


class ServerRow(BaseModel):
    name: str
    version: str
    port: int
    pid: int | None
    state: str  # up, starting, down
    rss_mb: float
    note: str


@dataclass(frozen=True)
class ServerReading:
    rows: list[ServerRow]
    read_at: float  # time.time() when it was read


def read_servers(settings: Settings) -> list[ServerRow]:
    """Every server of the stack now (blocking: run it off the event loop)."""
    return [ServerRow(name=s.name, version=s.version, port=s.port, pid=s.pid, state=s.state, rss_mb=s.rss_mb,
                      note=s.note) for s in Stack(settings, progress=lambda _: None).status()]


@dataclass
class ServerStatus:
    settings: Settings
    max_age_s: float = MAX_AGE_S
    clock: Callable[[], float] = time.time  # tests pass their own, to age a reading without waiting
    _last: ServerReading | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _fresh(self) -> ServerReading | None:
        last = self._last
        return last if last is not None and self.clock() - last.read_at < self.max_age_s else None

    async def read(self) -> ServerReading:
        """The last reading while younger than ``max_age_s``, else a new one (one at a time)."""
        if (fresh := self._fresh()) is not None:
            return fresh
        async with self._lock:
            if (fresh := self._fresh()) is not None:  # read by whoever held the lock meanwhile
                return fresh
            rows = await asyncio.to_thread(read_servers, self.settings)
            self._last = ServerReading(rows, self.clock())
            return self._last
