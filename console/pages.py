"""How every console view is answered: one ``page`` call renders HTML or the same data as JSON.

A view builds a pydantic model of what it shows and returns ``page(request, "area.html", model)``:
a browser gets the Jinja2 template (extending ``base.html``; the model is ``model`` in it), a script
asking with ``Accept: application/json`` or ``?format=json`` gets ``model`` as JSON. So the JSON is
exactly what the page shows, never a second code path. Helpers for templates live here too: the
navigation, and sparklines drawn on the server as inline SVG (no script, nothing fetched).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel

from shopflow.access import Permission
from shopflow.console.auth import csrf_token

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    area: str  # also the link's data-testid: nav-<area>


# The console's areas, in the order of the navigation bar (each is console/routers/<module>.py).
NAV = (
    NavItem("Overview", "/", "overview"),
    NavItem("Consumer groups", "/groups", "groups"),
    NavItem("Connect", "/connect", "connect"),
    NavItem("Dead letters", "/dead-letters", "dead-letters"),
    NavItem("Saga", "/saga", "saga"),
    NavItem("Shop", "/shop", "shop"),
)


def wants_json(request: Request) -> bool:
    """``?format=json``, or an Accept header asking for JSON rather than HTML."""
    if request.query_params.get("format") == "json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def sparkline(values: Sequence[float | None], width: int = 160, height: int = 28, label: str = "") -> Markup:
    """An inline SVG line of ``values`` (gaps where a value is missing), scaled to its own maximum; "no
    history" below two known values (no monitor, or just started), where a line would be an empty box or a dot."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    if len(known) < 2:
        return Markup('<span class="muted no-history" data-testid="no-history" title="{}">no history</span>'
                      ).format(label)
    top = max(known, default=0.0) or 1.0
    step = width / max(len(values) - 1, 1)
    segments: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            segments.append([])
            continue
        segments[-1].append(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}")
    lines = "".join(f'<polyline points="{" ".join(s)}"/>' for s in segments if len(s) > 1)
    dots = "".join(f'<circle cx="{s[0].split(",")[0]}" cy="{s[0].split(",")[1]}" r="1.5"/>'
                   for s in segments if len(s) == 1)
    title = Markup("<title>{}</title>").format(label) if label else ""
    return Markup(f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                  f'role="img" aria-label="{Markup.escape(label)}">{title}{lines}{dots}</svg>')


def duration(seconds: float | None) -> str:
    """Seconds as people read them: 850 ms, 12.5 s, 3 min 20 s, 2 h 5 min."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def timestamp(ms: int | None) -> str:
    """Milliseconds since the epoch as UTC date and time, to the millisecond."""
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.globals.update(nav=NAV, csrf_token=csrf_token, OPS_VIEW=Permission.OPS_VIEW)
TEMPLATES.env.filters.update(sparkline=sparkline, duration=duration, timestamp=timestamp)


def page(request: Request, template: str, model: BaseModel, status_code: int = 200, **extra: Any) -> Response:
    """The view as HTML (``template`` with ``model``), or ``model`` as JSON when the caller asks for JSON."""
    if wants_json(request):
        return JSONResponse(model.model_dump(mode="json"), status_code=status_code)
    context = {"model": model, "principal": getattr(request.state, "principal", None), **extra}
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


class Problem(BaseModel):
    """An error as the console shows it: what went wrong, and what to do."""

    status: int
    detail: str


def error_page(request: Request, status_code: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    if wants_json(request):
        return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)
    response = TEMPLATES.TemplateResponse(
        request, "error.html", {"model": Problem(status=status_code, detail=detail),
                                "principal": getattr(request.state, "principal", None)},
        status_code=status_code)
    response.headers.update(headers or {})
    return response
