"""An aiohttp app served on 127.0.0.1 (a free port) from its own event loop in a thread: the local
stand-ins of outside services (the push service, the SMS provider), which a blocking test, the caller's
own loop or another process can all reach."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class ThreadedServer:
    """``with ThreadedServer(app) as server:`` serving ``app`` at ``server.origin`` until the block ends."""

    def __init__(self, app: web.Application, name: str) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._runner: web.AppRunner | None = None
        self.origin = ""

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.origin = f"http://127.0.0.1:{port}"

    def start(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self.origin

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
