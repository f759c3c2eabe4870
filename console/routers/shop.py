"""The shop admin page (``/shop``): orders and revenue per hour and day, top skus, carts turned into orders,
stock levels below a threshold. Each part read from its read model (``console.shop``); one being away
is said on the page, the others still shown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from shopflow.console.auth import OpsViewer
from shopflow.console.pages import page
from shopflow.console.resources import ConsoleDep
from shopflow.console.shop import (
    PROMETHEUS_ERRORS,
    STOCK_ERRORS,
    Checkouts,
    ShopView,
    Stock,
    checkouts,
    orders_per,
    stock_levels,
    top_skus,
)

router = APIRouter()
T = TypeVar("T")


async def _or_note(part: Awaitable[T], errors: tuple[type[Exception], ...], notes: list[str],
                   say: Callable[[Exception], str]) -> T | None:
    """A part of the page, or None and a note saying why it is missing and what to do."""
    try:
        return await part
    except errors as exc:
        notes.append(say(exc))
        return None


@router.get("/shop", include_in_schema=False)
async def shop_page(request: Request, console: ConsoleDep, viewer: OpsViewer,
                    hours: Annotated[int, Query(ge=1, le=168, description="hours in the hourly table")] = 24,
                    days: Annotated[int, Query(ge=1, le=366, description="days in the daily table and top skus")] = 14,
                    top: Annotated[int, Query(ge=1, le=100, description="top skus listed")] = 10,
                    below: Annotated[int | None, Query(ge=0, le=1_000_000, description="low stock: fewer units "
                                                       "available than this")] = None,
                    low: Annotated[int, Query(ge=1, le=500, description="low-stock skus listed")] = 50) -> Response:
    now = datetime.now(UTC)
    threshold = console.settings.ops_low_stock_threshold if below is None else below
    notes: list[str] = []
    stock_task = asyncio.create_task(asyncio.to_thread(stock_levels, console.settings, threshold, low))
    cart_task = asyncio.create_task(checkouts(console.prometheus, "1d"))
    hourly, daily, skus = [], [], []
    try:
        async with console.pool.acquire() as conn:
            hourly = await orders_per(conn, "hour", hours, now)
            daily = await orders_per(conn, "day", days, now)
            skus = await top_skus(conn, days, top, now)
    except (OSError, asyncpg.PostgresError) as exc:
        notes.append(f"The orders read model could not be read ({exc}); is PostgreSQL up (`shopflow stack status`) "
                     "and the projection running (`shopflow projection`)?")
    stock: Stock | None = await _or_note(stock_task, STOCK_ERRORS, notes, lambda exc: (
        f"The search index did not answer for stock levels ({type(exc).__name__}); is OpenSearch up "
        "(`shopflow stack status`) and `shopflow indexer` running?"))
    carts: Checkouts | None = await _or_note(cart_task, PROMETHEUS_ERRORS, notes,
                                             lambda exc: f"Carts turned into orders: {exc}")
    return page(request, "shop.html", ShopView(hourly=hourly, daily=daily, top_skus=skus, top_skus_days=days,
                                               checkouts=carts, stock=stock, notes=notes))
