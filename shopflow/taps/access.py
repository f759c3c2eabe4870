"""Who may tap which topic, and how a tap is written in the audit log: the one rule of the CLI, the HTTP
tap (``GET /v1/taps``) and the ops console's tap page.

Topics: over HTTP and in the console, the catalog's topics and their ``.dlq`` topics only, never
``_schemas``, ``__consumer_offsets`` or Kafka Connect's internal topics (other systems' state, and
connector configurations with their secrets). The CLI runs with the cluster's own credentials, so it
may read any existing topic, and is audited alike.

Permissions: ``taps.read`` to tap, and ``taps.unmask`` as well to see personal fields in the clear,
checked on a principal freshly loaded from PostgreSQL (``shopflow.access.principal_of``), not on a
token's claims: a revoked role stops the next tap at once.

Audit: action ``tap.read`` (masked) or ``tap.unmask``, target ``topic:<name>``, detail
``TapAudit.detail`` (where it came from, whether masked, and the request's start, end, filter and
bounds), written before the first record is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from shopflow import access
from shopflow.access import Permission, Principal
from shopflow.taps.reader import TapRequest
from shopflow.taps.records import TapError
from shopflow.topologies.catalog import Topic, all_topics

Via = Literal["cli", "http", "console"]


class NotTappable(TapError):
    """A topic outside the catalog asked for over HTTP or in the console (HTTP 404)."""


def tappable_topics() -> list[str]:
    """The topics the HTTP tap and the console may read: the catalog's and their dead-letter topics."""
    return [t.name for t in all_topics()]


def tappable(topic: str) -> Topic:
    """The catalog topic of that name, or ``NotTappable`` listing those there are."""
    for known in all_topics():
        if known.name == topic:
            return known
    raise NotTappable(f"no tappable topic {topic!r}; the catalog's topics and their .dlq topics are: "
                      f"{', '.join(tappable_topics())}")


def missing_permission(principal: Principal, *, unmask: bool) -> Permission | None:
    """The permission ``principal`` lacks for a tap (``unmask``: personal fields in the clear), or None."""
    if not principal.can(Permission.TAPS_READ):
        return Permission.TAPS_READ
    if unmask and not principal.can(Permission.TAPS_UNMASK):
        return Permission.TAPS_UNMASK
    return None


@dataclass(frozen=True)
class TapAudit:
    """One tap's audit-log row (``shopflow.access.audit``)."""

    action: str
    target: str
    detail: dict[str, Any]


def tap_audit(request: TapRequest, via: Via, **extra: Any) -> TapAudit:
    """The audit row of a tap: ``extra`` adds what only one front has (the HTTP format, a client address)."""
    return TapAudit(
        action="tap.read" if request.mask else "tap.unmask",
        target=f"topic:{request.topic}",
        detail={"via": via, "masked": request.mask, "start": repr(request.start), "until_ms": request.until_ms,
                "partitions": list(request.partitions) if request.partitions else None, "where": request.where,
                "fields": list(request.fields) if request.fields else None, "follow": request.follow,
                "count": request.count, "max_scanned": request.max_scanned, **extra},
    )


async def audit_tap(conn: asyncpg.Connection, actor: Principal | str, request: TapRequest, via: Via,
                    **extra: Any) -> None:
    entry = tap_audit(request, via, **extra)
    await access.audit(conn, actor=actor, action=entry.action, target=entry.target, detail=entry.detail)
