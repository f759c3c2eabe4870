"""The stuck orders the monitor publishes, for the ops console: their record types and where they are kept.

The monitor (``streams.monitor``) knows which orders are past their step deadline (``streams.saga_health``
owns that rule) and what each one did so far; Prometheus gets only their count (``shopflow_orders_stuck``).
Each sweep (every second) the monitor writes the list, oldest deadline first and capped at
``BOARD_LIMIT``, as one JSON value in Redis with a short expiry: a console reading no value knows the
monitor is gone (or still reading the saga's history), never shows a stale list as live. The key
(``board_key_of``) carries the deployment's PostgreSQL schema, the namespace a console and its monitor
share: a test's monitor and console (a throwaway schema each) and the real ones (``public``) share one
Redis without overwriting each other's list.
"""

from __future__ import annotations

import logging
import time

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError

from shopflow.settings import Settings

log = logging.getLogger(__name__)

BOARD_KEY_PREFIX = "shopflow:monitor:stuck-orders"
# Long enough for a few missed sweeps (one a second), short enough that a dead monitor's list goes away.
BOARD_TTL_S = 15
BOARD_LIMIT = 100
# Records kept per order for its path; an order with many lines has a few records per line and step.
PATH_LIMIT = 64


def board_key_of(settings: Settings) -> str:
    """Where the monitor of ``settings``'s deployment publishes its stuck orders, and its console reads them."""
    return f"{BOARD_KEY_PREFIX}:{settings.postgres_schema}"


class PathStep(BaseModel):
    """One record the order caused, as the monitor read it."""

    topic: str
    record: str  # short record name (OrderPlaced)
    at_ms: int  # the record's occurred_at


class StuckOrder(BaseModel):
    """An open order past its step deadline (the saga's Timeout plus the monitor's grace)."""

    order_id: str
    state: str
    entered_at_ms: int  # event time it entered its state
    deadline_ms: int  # when its step timed out (the grace not included)
    placed_at_ms: int | None  # its OrderPlaced's occurred_at, when that was read
    awaiting: list[str]  # "<topic> <Record>": the answers that would move it on
    path: list[PathStep]
    path_truncated: bool = False


class StuckBoard(BaseModel):
    """What one sweep published."""

    published_at_ms: int
    total: int  # stuck orders, all of them (``orders`` holds the first BOARD_LIMIT)
    orders: list[StuckOrder]


class BoardPublisher:
    """Writes the board from the monitor's thread (a synchronous client); a Redis that does not answer
    costs a warning a minute, never the monitor."""

    def __init__(self, redis_url: str, key: str, ttl_s: int = BOARD_TTL_S):
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.key, self.ttl_s = key, ttl_s
        self._warned_at = 0.0

    def publish(self, total: int, orders: list[StuckOrder]) -> None:
        board = StuckBoard(published_at_ms=int(time.time() * 1000), total=total, orders=orders)
        try:
            self.client.set(self.key, board.model_dump_json(), ex=self.ttl_s)
        except redis.RedisError as exc:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("stuck orders not published to Redis (%s): the ops console cannot list them; "
                            "is Redis up? `shopflow stack status`", exc)

    def close(self) -> None:
        self.client.close()


async def read_board(client: aioredis.Redis, key: str) -> StuckBoard | None:
    """The last board published, or None when no monitor published one within ``BOARD_TTL_S``."""
    raw = await client.get(key)
    if raw is None:
        return None
    try:
        return StuckBoard.model_validate_json(raw)
    except ValidationError as exc:  # a monitor of another version: say so rather than fail the page
        log.warning("the stuck-orders board in Redis is not readable: %s", exc)
        return None
