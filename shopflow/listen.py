"""PostgreSQL LISTEN for the processes that react to NOTIFY: one connection per channel that comes back
by itself when it is lost.

A notification is not queued for a listener that is not connected, so whoever listens must be told
when some may have been missed: ``on_gap`` runs when the connection is lost and again once it is
back (the edge's price book forgets its prices; the order waiters read the read model again). While
it is down, ``listening`` is False and the connection is re-opened in the background, with
exponential backoff (tenacity), until it is back or ``close()`` is called.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from shopflow.db import connect
from shopflow.settings import Settings

log = logging.getLogger(__name__)

# First wait before reconnecting, and the most it grows to while PostgreSQL stays away.
RECONNECT_S = 0.5
RECONNECT_MAX_S = 5.0


def _nothing() -> None:
    return None


class Listener:
    """LISTEN on ``channel``: ``on_notify(payload)`` for each notification, ``on_gap()`` when some may
    have been missed (see the module's doc). Callbacks run on the event loop and must not block."""

    def __init__(self, settings: Settings, channel: str, on_notify: Callable[[str], None], *,
                 on_gap: Callable[[], None] = _nothing):
        self.settings = settings
        self.channel = channel
        self.on_notify = on_notify
        self.on_gap = on_gap
        self._conn: asyncpg.Connection | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        """Listen now; fails when PostgreSQL cannot be reached (a process should not start without it)."""
        await self._listen()

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _listen(self) -> None:
        conn = await connect(self.settings, application_name=f"shopflow-listen-{self.channel}")
        try:
            await conn.add_listener(self.channel, self._notified)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self.on_gap()  # whatever was notified while nobody listened

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.on_notify(payload)

    def _lost(self, _conn: object) -> None:
        if self._closed:
            return
        self._conn = None
        self.on_gap()
        if self._reconnect is None or self._reconnect.done():
            log.warning("LISTEN %s lost; reconnecting in the background", self.channel)
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_until_back(),
                                                                     name=f"listen-{self.channel}")

    async def _reconnect_until_back(self) -> None:
        def failed(state: RetryCallState) -> None:
            log.debug("LISTEN %s: reconnect failed: %r", self.channel,
                      state.outcome.exception() if state.outcome else None)

        retrying = AsyncRetrying(retry=retry_if_exception_type((OSError, asyncpg.PostgresError)),
                                 wait=wait_exponential(multiplier=RECONNECT_S, max=RECONNECT_MAX_S),
                                 before_sleep=failed)
        async for attempt in retrying:
            with attempt:
                await self._listen()
        log.info("LISTEN %s: listening again", self.channel)
