"""Saga health (``/saga``) and one order's story (``/saga/orders/{order_id}``).

The health page shows what the monitor measured (``console.saga``); the story reads the saga's topics with
the tap engine, bounded as ``console.story`` says, masked, and is audited as every tap is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response

from shopflow.access import audit
from shopflow.console.auth import OpsViewer
from shopflow.console.pages import TEMPLATES, page
from shopflow.console.resources import ConsoleDep
from shopflow.console.saga import saga_health
from shopflow.console.story import (
    DEFAULT_LOOKBACK_S,
    DEFAULT_MAX_SCANNED,
    BadOrderId,
    StoryReader,
    checked_order_id,
    order_anchor,
)
from shopflow.streams.stuck_orders import board_key_of
from shopflow.taps.reader import parse_since
from shopflow.taps.records import TapError
from shopflow.taps.seek import iso

router = APIRouter()
TEMPLATES.env.filters.setdefault("iso_ms", iso)  # a record's time as the tap prints it


@router.get("/saga", include_in_schema=False)
async def saga_page(request: Request, console: ConsoleDep, viewer: OpsViewer) -> Response:
    return page(request, "saga.html", await saga_health(console.prometheus, console.redis,
                                                      board_key_of(console.settings)))


@router.get("/saga/orders", include_in_schema=False)
async def find_order(order_id: Annotated[str, Query(min_length=1, max_length=128)], viewer: OpsViewer) -> Response:
    """The saga page's search box: on to the order's story."""
    try:
        return RedirectResponse(f"/saga/orders/{checked_order_id(order_id.strip())}", status.HTTP_303_SEE_OTHER)
    except BadOrderId as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None


def _lookback_s(since: str | None) -> float:
    if since is None:
        return DEFAULT_LOOKBACK_S
    try:
        return max(1.0, (time.time() * 1000 - parse_since(since)) / 1000)
    except TapError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"since: {exc}") from None


@router.get("/saga/orders/{order_id}", include_in_schema=False)
async def order_story(request: Request, order_id: str, console: ConsoleDep, viewer: OpsViewer,
                      since: Annotated[str | None, Query(description="how far back to search an order the read "
                                                         "model does not have, e.g. 2h, 3d")] = None,
                      max_scanned: Annotated[int, Query(ge=1_000, le=5_000_000)] = DEFAULT_MAX_SCANNED) -> Response:
    try:
        order_id = checked_order_id(order_id)
    except BadOrderId as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    lookback_s = _lookback_s(since)
    async with console.pool.acquire() as conn:
        anchor = await order_anchor(conn, order_id)
        await audit(conn, actor=viewer, action="ops.order-story", target=order_id,
                    detail={"lookback_s": lookback_s, "max_scanned": max_scanned})
    reader = StoryReader(console.settings, console.codec, max_scanned=max_scanned)
    try:
        story = await asyncio.to_thread(reader.read, order_id, anchor, int(time.time() * 1000), lookback_s)
    except TapError as exc:  # Kafka or the registry away, or the saga's topics not created (`shopflow topics apply`)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return page(request, "saga_order.html", story)
