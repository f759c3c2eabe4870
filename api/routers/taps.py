"""Topic taps over HTTP (``GET /v1/taps/{topic}``): a catalog topic or its dead-letter topic, decoded,
filtered and masked as ``shopflow tap`` does, streamed as NDJSON or Server-Sent Events.

The query parameters are the CLI's options (``from_beginning``/``offset``/``since``/``at``, ``until``,
``count`` (``limit``: its alias), ``follow``, ``where``, ``fields``, ``max_scanned``, ``mask``) plus
``max_seconds``, the cap on how long one tap may run, so a forgotten ``curl`` of a followed topic does
not hold a consumer forever. Who may tap what, and the audit row: ``shopflow.taps.access``
(``taps.read``; ``taps.unmask`` for ``mask=false``; checked on the token's claims and on the account
as it is in PostgreSQL now, so a revoked role stops the next tap at once). Each user runs at most
``settings.taps_per_user`` taps at once (429 with ``Retry-After``; counted in Redis, so across the
edge's processes), each process at most ``TAPS_PER_PROCESS``; the edge's request rate limit applies
as to every route. Every tap is written to the audit log before its first record. Streaming: ``api.tap_stream``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from shopflow import access
from shopflow.api.dependencies import Edge, EdgeDep, forbidden, require, unauthorized
from shopflow.api.errors import errors
from shopflow.api.security import Claims, Permission
from shopflow.api.tap_stream import NDJSON, SSE, TapResponse, TapStream
from shopflow.schemas.codec import AvroCodec
from shopflow.settings import Settings
from shopflow.taps.access import NotTappable, audit_tap, missing_permission, tappable
from shopflow.taps.reader import Masker, Tap, TapRequest, default_masker, request_of
from shopflow.taps.records import TapError, TapUnavailable

router = APIRouter(prefix="/v1/taps", tags=["taps"])

TAPS_PER_PROCESS = 16  # threads one edge process gives to taps at most
MAX_SECONDS = 3600
SLOTS_PREFIX = "shopflow:taps:running"
# Kafka's legal topic names.
TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"

# KEYS[1]: the user's running taps (a sorted set: tap id -> when its slot lapses). ARGV: now, lapse, limit, id.
# Lapsed entries are dropped first, so a tap whose edge process died frees its slot by itself.
_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.ceil(tonumber(oldest[2]) - tonumber(ARGV[1]))}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[2])))
return {1, 0}
"""


class TapQuery(BaseModel):
    """The CLI's options, as query parameters."""

    model_config = ConfigDict(extra="forbid")

    partition: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="Partitions to read (repeat the parameter for several); all when absent.")
    from_beginning: bool = Field(False, description="Start at the first record: the default, except when "
                                                    "following (then only new records, as `tail -f`).")
    offset: str | None = Field(None, max_length=2000, description="Start at this offset on every partition (`42`), "
                                                                  "or per partition (`0:42,3:17`, as a summary's "
                                                                  "`positions` say).")
    since: str | None = Field(None, max_length=40, description="Start this long ago: `10m`, `2h`, `1d`, `1h30m`.")
    at: str | None = Field(None, max_length=40, description="Start at this time: ISO-8601 or ms since the epoch.")
    until: str | None = Field(None, max_length=40, description="Stop at this time (records after it are not shown).")
    count: int | None = Field(None, ge=1, description="Stop after this many records shown.")
    limit: int | None = Field(None, ge=1, description="The same as `count` (the one bound on results), for "
                                                      "clients written when both existed; give one.")
    follow: bool = Field(False, description="Keep reading as records arrive, until `max_seconds` or `until`.")
    where: str | None = Field(None, max_length=2000, description="A CEL filter on key, value, headers, partition, "
                                                                 "offset and timestamp.")
    fields: str | None = Field(None, max_length=2000, description="Dotted paths of the value to keep: `a,b.c`.")
    max_scanned: int | None = Field(None, ge=1, le=10_000_000, description="Stop after scanning this many records "
                                                                          "(default 100,000; none while following).")
    max_seconds: int = Field(300, ge=1, le=MAX_SECONDS, description="Stop the tap after this many seconds.")
    mask: bool = Field(True, description="Mask personal fields; `false` needs the `taps.unmask` permission.")
    format: str | None = Field(None, pattern="^(ndjson|sse)$", description="`sse` for Server-Sent Events; the "
                                                                           "default follows `Accept`, else NDJSON.")

    def tap_request(self, topic: str) -> TapRequest:
        """The engine's request, parsed as ``shopflow tap`` parses its options (one parser); ``TapError`` for
        a start or end it cannot read, or more than one of either."""
        if self.count is not None and self.limit is not None:
            raise TapError("count and limit are the same bound: give one")
        count = self.count if self.count is not None else self.limit
        return request_of(topic, partitions=self.partition, from_beginning=self.from_beginning, offset=self.offset,
                          since=self.since, at=self.at, until=self.until, count=count, follow=self.follow,
                          where=self.where, fields=self.fields, max_scanned=self.max_scanned, mask=self.mask)


async def take_slot(redis: Redis, settings: Settings, user_id: str, lapse_s: float) -> str:
    """A running-tap slot of the user for ``lapse_s`` at most; 429 with ``Retry-After`` when all are taken."""
    tap_id = uuid.uuid4().hex
    now = time.time()
    taken, retry_after = await redis.eval(_TAKE_SLOT, 1, f"{SLOTS_PREFIX}:{user_id}", now, now + lapse_s,
                                          settings.taps_per_user, tap_id)
    if not int(taken):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"you are running {settings.taps_per_user} taps already (the most at once); "
                            "end one or retry later", headers={"Retry-After": str(max(1, int(retry_after)))})
    return tap_id


def _open(settings: Settings, request: TapRequest, codec: AvroCodec, masker: Masker | None) -> Tap:
    tap = Tap(settings, request, codec=codec, masker=masker)
    try:
        tap.open()
    except BaseException:
        tap.close()
        raise
    return tap


def _masker(request: Request, edge: Edge) -> Masker:
    """One masker per app (it reads every .avsc once), shared by its taps."""
    masker: Masker | None = getattr(request.app.state, "tap_masker", None)
    if masker is None:
        masker = request.app.state.tap_masker = default_masker(edge.settings, edge.codec)
    return masker


class _Running:
    """This process's running taps (touched on the event loop's thread only)."""

    count = 0


# The token must carry taps.read (a grant counts from the next token refresh) and the account as it is in
# PostgreSQL now must have it too (a revoke counts at once): shopflow.taps.access.missing_permission.
TapReader = Annotated[Claims, Depends(require(Permission.TAPS_READ))]

_STREAM_DOC = ("NDJSON: one record per line (`TapRecord.as_json`), the last line the summary (`\"summary\": true`, "
               "what was scanned and shown, why it stopped, where to continue), or `{\"error\": ...}` when the "
               "tap failed midway. SSE: `event: record` with `id: <partition>:<offset>`, then `event: summary`.")


@router.get(
    "/{topic}", response_class=TapResponse, status_code=status.HTTP_200_OK,
    responses={200: {"description": _STREAM_DOC, "content": {
        NDJSON.media_type: {"schema": {"type": "string"}}, SSE.media_type: {"schema": {"type": "string"}}}},
        **errors(401, 403, 404, 422, 429, 503)},
)
async def tap_topic(
    topic: Annotated[str, Path(pattern=TOPIC_PATTERN, description="A catalog topic or its `.dlq` topic.")],
    query: Annotated[TapQuery, Query()],
    user: TapReader,
    request: Request,
    edge: EdgeDep,
    accept: Annotated[str | None, Header()] = None,
) -> TapResponse:
    """Read a topic decoded to JSON: from the beginning, an offset or a time, up to a time or a count,
    or followed live; filtered (CEL) and with personal fields masked. Streamed with backpressure."""
    # A pool connection for the look-up and the audit only: never held while the tap streams.
    async with edge.pool.acquire() as conn:
        principal = await access.principal_of(conn, user.user_id)
    if principal is None:
        raise unauthorized("the account of this token no longer exists")
    missing = missing_permission(principal, unmask=not query.mask)
    if missing is not None:
        raise forbidden(missing)
    try:
        tappable(topic)
        tap_request = query.tap_request(topic)
    except NotTappable as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except TapError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if _Running.count >= TAPS_PER_PROCESS:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"this edge process is running its "
                            f"{TAPS_PER_PROCESS} taps; retry shortly", headers={"Retry-After": "5"})
    slot_key = f"{SLOTS_PREFIX}:{user.user_id}"
    tap_id = await take_slot(edge.redis, edge.settings, user.user_id, query.max_seconds + 30)
    _Running.count += 1

    async def release() -> None:
        _Running.count -= 1
        await edge.redis.zrem(slot_key, tap_id)

    sse = query.format == "sse" or (query.format is None and "text/event-stream" in (accept or ""))
    tap: Tap | None = None
    try:
        masker = await asyncio.to_thread(_masker, request, edge) if tap_request.mask else None
        tap = await asyncio.to_thread(_open, edge.settings, tap_request, edge.codec, masker)
        async with edge.pool.acquire() as conn:
            await audit_tap(conn, principal, tap_request, "http", format="sse" if sse else "ndjson",
                            max_seconds=query.max_seconds, client=request.client.host if request.client else None)
    except BaseException as exc:
        if tap is not None:
            tap.close()
        await release()
        if isinstance(exc, TapUnavailable):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": "5"}) from None
        if isinstance(exc, TapError):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        raise
    stream = TapStream(tap, SSE if sse else NDJSON, max_seconds=query.max_seconds, on_close=release)
    return TapResponse(stream)
