"""A topic tap streamed over HTTP: NDJSON or Server-Sent Events, with backpressure and a clean stop.

The tap engine (``shopflow.taps.reader.Tap``) is blocking, so each HTTP tap runs it on a thread of
its own (not the event loop's small default pool, which password hashing and other short jobs
need). The thread hands encoded frames to the response through a buffer of ``BUFFER`` frames: when
the client reads slowly the buffer fills, the thread waits, and the tap stops fetching; memory never
grows with a slow client. A client that goes away, the response's time cap (``max_seconds``) or the
edge shutting down stops the tap (``Tap.stop``): its thread ends within a poll, the tap's consumer
is closed and the caller's slot is given back (``on_close``).

The last frame is the ``TapSummary`` (NDJSON: a line with ``"summary": true``; SSE: ``event:
summary``), or ``{"error": ...}`` when Kafka failed mid-tap. SSE records carry ``id:
<partition>:<offset>``; while a followed topic is quiet an SSE comment is sent every
``KEEPALIVE_S`` so proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from shopflow.taps.records import TapError, TapRecord, TapSummary, json_bytes

log = logging.getLogger(__name__)

BUFFER = 64  # frames waiting for the client at most; then the tap's thread waits
KEEPALIVE_S = 15.0
_POLL_S = 0.25  # how often a waiting tap thread checks whether it should stop
_END = None  # after the last frame: the tap's thread is done


class RunningTap(Protocol):
    """What the stream needs of a tap (``shopflow.taps.reader.Tap``, or a stand-in in tests)."""

    summary: TapSummary

    def records(self) -> Iterator[TapRecord]: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Framing:
    """How records and the summary are written on the wire."""

    media_type: str
    sse: bool

    def record(self, record: TapRecord) -> bytes:
        line = record.json_line()  # the as_json shape, serialised once (it ends with its newline)
        if self.sse:
            return b"id: %d:%d\nevent: record\ndata: %s\n" % (record.partition, record.offset, line)
        return line

    def summary(self, summary: TapSummary) -> bytes:
        return self._event("summary", summary.as_json())

    def error(self, message: str) -> bytes:
        return self._event("error", {"error": message})

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        text = json_bytes(data)
        return b"event: %s\ndata: %s\n\n" % (name.encode(), text) if self.sse else text + b"\n"

    @property
    def keepalive(self) -> bytes | None:
        # NDJSON has no comment line: a quiet NDJSON tail sends nothing until its next record.
        return b": keep-alive\n\n" if self.sse else None


NDJSON = Framing("application/x-ndjson", sse=False)
SSE = Framing("text/event-stream", sse=True)


class TapStream:
    """One tap's frames, produced on a thread of its own and read by the response (``frames()``)."""

    def __init__(self, tap: RunningTap, framing: Framing, *, max_seconds: float,
                 on_close: Callable[[], Awaitable[None]] | None = None, buffer: int = BUFFER):
        self.tap = tap
        self.framing = framing
        self.max_seconds = max_seconds
        self.timed_out = False
        self._on_close = on_close
        self._slots = threading.Semaphore(buffer)
        self._gone = threading.Event()  # the response is over: the thread stops handing frames
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- the tap's thread -----------------------------------------------------------------------------

    def _offer(self, frame: bytes) -> bool:
        """Hand a frame to the response, waiting while the buffer is full; False once nobody reads."""
        while not self._slots.acquire(timeout=_POLL_S):
            if self._gone.is_set():
                return False
        if self._gone.is_set():
            return False
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, frame)
        except RuntimeError:  # the event loop is closed: the edge is shutting down
            return False
        return True

    def _pump(self) -> None:
        framing = self.framing
        try:
            for record in self.tap.records():
                if not self._offer(framing.record(record)):
                    return
            summary = self.tap.summary
            if self.timed_out:
                summary.message += (f"; the HTTP tap's time cap of {self.max_seconds:g}s was reached "
                                    "(max_seconds, at most 3600)")
            self._offer(framing.summary(summary))
        except TapError as exc:
            self._offer(framing.error(str(exc)))
        except Exception as exc:  # never a silent end: the client learns the tap broke
            log.exception("tap failed")
            self._offer(framing.error(f"the tap failed: {exc}"))
        finally:
            self.tap.close()
            if self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits
                    self._loop.call_soon_threadsafe(self._queue.put_nowait, _END)

    # --- the response's side --------------------------------------------------------------------------

    def _time_up(self) -> None:
        self.timed_out = True
        self.tap.stop()

    def stop(self) -> None:
        """The client went away: stop the tap; ``frames()`` ends soon after."""
        self.tap.stop()

    async def frames(self) -> AsyncIterator[bytes]:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._pump, name="shopflow-tap", daemon=True)
        self._thread.start()
        deadline = self._loop.call_later(self.max_seconds, self._time_up)
        keepalive = self.framing.keepalive
        try:
            while True:
                try:
                    frame = await (asyncio.wait_for(self._queue.get(), KEEPALIVE_S) if keepalive
                                   else self._queue.get())
                except TimeoutError:
                    yield keepalive or b""
                    continue
                batch: list[bytes] = []
                while frame is not _END:
                    self._slots.release()
                    batch.append(frame)
                    if self._queue.empty():
                        break
                    frame = self._queue.get_nowait()
                if batch:
                    yield b"".join(batch)
                if frame is _END:
                    return
        finally:
            deadline.cancel()

    async def close(self) -> None:
        """Stop the tap and give the caller's slot back; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._gone.set()
        self.tap.stop()
        if self._thread is None:
            self.tap.close()  # never started: nothing else will close it
        if self._on_close is not None:
            await self._on_close()


class TapResponse(StreamingResponse):
    """The response of one tap: it watches for the client going away itself (whatever the server's ASGI
    version), and always closes the stream, also when the client left before the first byte."""

    def __init__(self, stream: TapStream, headers: dict[str, str] | None = None):
        super().__init__(stream.frames(), media_type=stream.framing.media_type,
                         headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})})
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.stream.stop()

        try:
            async with anyio.create_task_group() as watching:
                watching.start_soon(watch)
                with contextlib.suppress(OSError):  # the client is gone; the tap is stopped below
                    await self.stream_response(send)
                watching.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.close()
