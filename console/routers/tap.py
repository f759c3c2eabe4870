"""The tap page (``/tap/{topic}``): up to 50 records of a topic from a partition and offset, decoded and
masked by the tap engine (``shopflow.taps``), each in the one JSON shape of a tap record.

Where the consumer-groups page sends a lagging partition (its committed offset: what the group has
yet to process), and a form to read elsewhere or filter (CEL, as ``shopflow tap --where``). Personal
fields are always masked here: unmasked reads are ``shopflow tap --no-mask`` with the permission.
Which topics and who (``taps.read``), and the audit row: ``shopflow.taps.access``, as for every tap.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response
from pydantic import BaseModel

from shopflow.console.auth import OpsViewer
from shopflow.console.pages import page
from shopflow.console.resources import Console, ConsoleDep
from shopflow.taps.access import NotTappable, audit_tap, missing_permission, tappable
from shopflow.taps.reader import AtOffset, Beginning, Tap, TapRequest
from shopflow.taps.records import TapError

router = APIRouter()

PAGE_RECORDS = 50
# A page answers within a request: a filter that matches little stops after this many records read.
PAGE_MAX_SCANNED = 20_000


class TapView(BaseModel):
    topic: str
    partition: int | None
    offset: int | None
    where: str | None
    records: list[dict[str, Any]]  # TapRecord.as_json(), the shape of `shopflow tap` and GET /v1/taps
    summary: dict[str, Any] | None  # TapSummary.as_json()
    next_url: str | None  # the next page (the same partition, after the last record shown)
    error: str | None = None


def _read(console: Console, request: TapRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with Tap(console.settings, request, codec=console.codec, masker=console.tap_masker) as tap:
        records = [record.as_json() for record in tap.records()]
    return records, tap.summary.as_json()


def _next_url(topic: str, partition: int | None, where: str | None, summary: dict[str, Any]) -> str | None:
    if partition is None or summary.get("stopped_by") not in ("count", "max-scanned"):
        return None
    position = summary.get("positions", {}).get(str(partition))
    if position is None:
        return None
    query = {"partition": partition, "offset": position, **({"where": where} if where else {})}
    return f"/tap/{quote(topic, safe='')}?{urlencode(query)}"


@router.get("/tap/{topic}", include_in_schema=False)
async def tap_page(request: Request, console: ConsoleDep, principal: OpsViewer, topic: str,
                   partition: int | None = Query(None, ge=0), offset: int | None = Query(None, ge=0),
                   where: str | None = Query(None, max_length=2000)) -> Response:
    missing = missing_permission(principal, unmask=False)
    if missing is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"the tap needs the {missing} permission; an admin grants "
                                                       f"it with `shopflow users grant {principal.email} data`")
    where = where.strip() or None if where else None
    tap_request = TapRequest(topic=topic, partitions=None if partition is None else [partition],
                             start=Beginning() if offset is None else AtOffset(offset), where=where,
                             count=PAGE_RECORDS, max_scanned=PAGE_MAX_SCANNED, mask=True)
    view = TapView(topic=topic, partition=partition, offset=offset, where=where, records=[], summary=None,
                   next_url=None)
    try:
        tappable(topic)
    except NotTappable as exc:
        return page(request, "tap.html", view.model_copy(update={"error": str(exc)}), status_code=404)
    async with console.pool.acquire() as conn:
        await audit_tap(conn, principal, tap_request, "console")
    try:
        records, summary = await asyncio.to_thread(_read, console, tap_request)
    except TapError as exc:
        return page(request, "tap.html", view.model_copy(update={"error": str(exc)}), status_code=400)
    view = view.model_copy(update={"records": records, "summary": summary,
                                   "next_url": _next_url(topic, partition, where, summary)})
    return page(request, "tap.html", view)
