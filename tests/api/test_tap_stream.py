"""The HTTP tap's stream without servers: framing, backpressure, and stopping when the client goes."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator

import pytest
from polling import eventually

from shopflow.api.tap_stream import NDJSON, SSE, TapResponse, TapStream
from shopflow.taps.records import TapRecord, TapSummary


class EndlessTap:
    """A followed topic that never ends: a record whenever asked, until stopped."""

    def __init__(self) -> None:
        self.summary = TapSummary()
        self.produced = 0
        self.stopped = threading.Event()
        self.closed = threading.Event()
        self.thread: threading.Thread | None = None

    def records(self) -> Iterator[TapRecord]:
        self.thread = threading.current_thread()
        while not self.stopped.is_set():
            self.produced += 1
            yield TapRecord("t", 0, self.produced - 1, 0, "k", [], {"n": self.produced}, "avro")
        self.summary.stopped_by = "interrupted"

    def stop(self) -> None:
        self.stopped.set()

    def close(self) -> None:
        self.closed.set()


class ShortTap(EndlessTap):
    def records(self) -> Iterator[TapRecord]:
        self.thread = threading.current_thread()
        yield TapRecord("t", 2, 41, 0, "k", [("h", "v")], {"email": "email:0a1b2c3d4e"}, "avro")
        self.summary.returned = self.summary.scanned = 1


def test_ndjson_is_one_record_per_line_and_sse_an_event_with_its_position():
    record = TapRecord("orders", 2, 41, 1, "o-1", [], {"a": "é"}, "avro")

    line = NDJSON.record(record)
    event = SSE.record(record).decode()

    assert json.loads(line) == record.as_json() and line.endswith(b"\n") and line.count(b"\n") == 1
    assert event.startswith("id: 2:41\nevent: record\ndata: {") and event.endswith("}\n\n")
    assert SSE.summary(TapSummary(returned=1)).startswith(b"event: summary\ndata: {")


async def test_a_finished_tap_streams_its_records_then_the_summary_and_gives_its_slot_back():
    released = asyncio.Event()

    async def release() -> None:
        released.set()

    tap = ShortTap()
    stream = TapStream(tap, NDJSON, max_seconds=10, on_close=release)
    body = b"".join([frame async for frame in stream.frames()])
    await stream.close()

    *records, summary = [json.loads(line) for line in body.splitlines()]
    assert records[0]["offset"] == 41 and summary["summary"] is True and summary["returned"] == 1
    assert tap.closed.is_set() and released.is_set()
    assert tap.thread is not None and tap.thread.name == "shopflow-tap"  # its own, not the event loop's pool


def waiting_for_a_slot(thread: threading.Thread | None) -> bool:
    """The thread is blocked handing a frame to a full buffer (``TapStream._offer``)."""
    frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident else None
    while frame is not None:
        if frame.f_code.co_name == "_offer":
            return True
        frame = frame.f_back
    return False


async def test_a_client_that_does_not_read_holds_the_tap_at_the_buffer():
    tap = EndlessTap()
    stream = TapStream(tap, NDJSON, max_seconds=30, buffer=8)
    frames = stream.frames()
    first = await anext(frames)  # the tap's thread is running now

    # Then nobody reads: the thread waits once the buffer is full, and reads no further.
    filled = eventually(lambda: tap.produced if tap.produced >= len(first.splitlines()) + 8 else None,
                        timeout_s=5, what="the buffer to fill")
    # ... and waits there, handing nothing more: an unbounded hand-off never parks, it runs ahead.
    eventually(lambda: waiting_for_a_slot(tap.thread), timeout_s=5, what="the tap's thread waiting for a slot")
    assert tap.produced - filled <= 1
    await stream.close()
    await frames.aclose()
    eventually(tap.closed.is_set, timeout_s=5, what="the tap closed by its thread")


async def test_a_client_that_goes_away_stops_the_tap_and_frees_its_thread():
    tap = EndlessTap()
    released = asyncio.Event()

    async def release() -> None:
        released.set()

    response = TapResponse(TapStream(tap, SSE, max_seconds=30, on_close=release))
    gone = asyncio.Event()
    sent: list[dict] = []

    async def receive() -> dict:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if len(sent) == 3:
            gone.set()  # the client read two chunks, then closed the connection

    await asyncio.wait_for(response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send), 10)

    assert tap.stopped.is_set() and released.is_set()
    thread = tap.thread
    assert thread is not None
    eventually(lambda: tap.closed.is_set() and not thread.is_alive(), timeout_s=5, what="the tap's thread to end")


async def test_the_time_cap_stops_a_followed_tap_and_the_summary_says_so():
    tap = EndlessTap()
    stream = TapStream(tap, NDJSON, max_seconds=0.2)

    async def last_line() -> bytes:
        tail = b""
        async for frame in stream.frames():
            tail = frame.splitlines()[-1]
        return tail

    summary = json.loads(await asyncio.wait_for(last_line(), 10))
    await stream.close()
    assert summary["stopped_by"] == "interrupted" and "time cap of 0.2s" in summary["message"]


@pytest.mark.parametrize("framing", [NDJSON, SSE], ids=["ndjson", "sse"])
async def test_a_tap_that_fails_midway_ends_with_an_error_frame(framing):
    from shopflow.taps.records import TapUnavailable

    class Failing(EndlessTap):
        def records(self) -> Iterator[TapRecord]:
            raise TapUnavailable("reading users failed: broker down; check `shopflow stack status`")
            yield  # a generator

    stream = TapStream(Failing(), framing, max_seconds=5)
    body = b"".join([frame async for frame in stream.frames()]).decode()
    await stream.close()
    assert "broker down" in body and ("event: error" in body) is framing.sse


async def test_close_before_the_first_byte_closes_the_tap():
    tap = EndlessTap()
    stream = TapStream(tap, NDJSON, max_seconds=5)
    await stream.close()
    assert tap.closed.is_set() and tap.thread is None
