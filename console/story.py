"""One order's whole story: every record it caused on the saga's topics, in order, read with the tap engine.

Where an order's records are, and what bounds the search:

- The order-keyed topics (order-commands, orders, stock-results, payment-requests, payment-results) hold
  all of an order's records in one partition each: the partition its key maps to with the producers'
  partitioner (murmur2, ``shopflow.kafka``). Only that partition is read.
- stock-requests is keyed by sku: an order's ReserveStock, ReleaseStock and CommitStock sit in the
  partitions of its lines' skus, among other orders' records; only those partitions are read, filtered on
  ``value.order_id``. The skus come from the orders read model (``orders_view.lines``) or, when the order
  is not there, from its PlaceOrder or OrderPlaced found on the order-keyed topics first.
- Time: with the order in ``orders_view``, from ``STORY_LEAD_S`` before it was placed (its PlaceOrder waited
  in order-commands until the orders agent took it) to the settle time after its last change when it is in
  a terminal state (its compensations' answers land then; a later cancel moves that change on), or to each
  partition's end while it runs. Without the read model's row, from ``lookback`` ago to the end.
- Each scan stops after ``max_scanned`` records; the story says which scans a bound stopped (then it may
  be incomplete, and says what to widen).

Records are read masked (``shopflow.taps``), as a data analyst's tap would show them.
"""

from __future__ import annotations

import graphlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from confluent_kafka.cimpl import murmur2
from pydantic import BaseModel

from shopflow.schemas.codec import AvroCodec
from shopflow.settings import Settings
from shopflow.taps.reader import AtTime, Tap, TapRequest
from shopflow.taps.records import TapRecord
from shopflow.topologies.catalog import (
    ORDER_COMMANDS,
    ORDERS,
    PAYMENT_REQUESTS,
    PAYMENT_RESULTS,
    STOCK_REQUESTS,
    STOCK_RESULTS,
    Topic,
)
from shopflow.topologies.saga import ORDER_SAGA
from shopflow.topologies.saga_model import Message

ORDER_KEYED = (ORDER_COMMANDS, ORDERS, STOCK_RESULTS, PAYMENT_REQUESTS, PAYMENT_RESULTS)
STORY_LEAD_S = 600.0
DEFAULT_LOOKBACK_S = 24 * 3600.0
DEFAULT_MAX_SCANNED = 200_000
# What an order id may look like here: the edge's ids and the tests' (it is put in a filter expression).
ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# Fields every saga record has: shown once per row (its time) or not at all.
_PLUMBING = frozenset({"event_id", "order_id", "user_id", "occurred_at"})


def _name(trigger: object) -> str:
    return trigger.short if isinstance(trigger, Message) else "StepTimedOut"


def _causal_order() -> dict[str, int]:
    """Record short name -> rank such that a cause ranks before what it causes (the saga's transitions and
    effects): the tie-break between records stamped in the same millisecond."""
    graph: dict[str, set[str]] = {}
    for t in ORDER_SAGA.transitions:
        for emit in t.emits:
            graph.setdefault(emit.message.short, set()).add(_name(t.trigger))
    for effect in ORDER_SAGA.effects:
        for answer in (effect.evidence, effect.refusal):
            if answer is not None:
                graph.setdefault(answer.short, set()).add(effect.request.short)
        if effect.compensation is not None and effect.acknowledgement is not None:
            graph.setdefault(effect.acknowledgement.short, set()).add(effect.compensation.short)
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:  # a saga with a loop: declaration order still says something
        order = list(graph)
    return {name: n for n, name in enumerate(order)}


CAUSAL_RANK = _causal_order()


class BadOrderId(ValueError):
    pass


def checked_order_id(order_id: str) -> str:
    if not ORDER_ID.fullmatch(order_id):
        raise BadOrderId(f"{order_id[:40]!r} is not an order id (letters, digits, '_', '.', ':', '-'; "
                         "at most 128 characters)")
    return order_id


@dataclass(frozen=True)
class OrderAnchor:
    """What the orders read model knows of an order: bounds for the search."""

    status: str
    skus: tuple[str, ...]
    created_ms: int
    updated_ms: int

    @property
    def ended(self) -> bool:
        """In a terminal state: what follows lands within the settle time, or moves ``updated_ms`` on."""
        return self.status in ORDER_SAGA.terminal_states


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def order_anchor(conn: asyncpg.Connection, order_id: str) -> OrderAnchor | None:
    row = await conn.fetchrow("SELECT status, lines, created_at, updated_at FROM orders_view WHERE order_id = $1",
                              order_id)
    if row is None:
        return None
    lines = row["lines"] if isinstance(row["lines"], list) else json.loads(row["lines"] or "[]")
    return OrderAnchor(row["status"], tuple(sorted({line["sku"] for line in lines})), _ms(row["created_at"]),
                       _ms(row["updated_at"]))


@dataclass(frozen=True)
class StoryScan:
    """One tap of the story: a topic's partitions over a time window, with a filter."""

    topic: Topic
    partitions: tuple[int, ...]
    from_ms: int
    until_ms: int | None
    where: str


def partition_of(key: str, topic: Topic) -> int:
    """The partition the producers put ``key`` on (librdkafka's murmur2, as the Java client's)."""
    return int(murmur2(key.encode(), topic.partitions))


def keyed_scans(order_id: str, from_ms: int, until_ms: int | None) -> list[StoryScan]:
    where = f"key == {json.dumps(order_id)}"
    return [StoryScan(t, (partition_of(order_id, t),), from_ms, until_ms, where) for t in ORDER_KEYED]


def stock_scan(order_id: str, skus: Iterable[str], from_ms: int, until_ms: int | None) -> StoryScan | None:
    partitions = tuple(sorted({partition_of(sku, STOCK_REQUESTS) for sku in skus}))
    if not partitions:
        return None
    return StoryScan(STOCK_REQUESTS, partitions, from_ms, until_ms,
                     f"has(value.order_id) && value.order_id == {json.dumps(order_id)}")


def skus_in(records: Iterable[TapRecord]) -> set[str]:
    """The skus of the order's lines, from its PlaceOrder or OrderPlaced."""
    found: set[str] = set()
    for record in records:
        if isinstance(record.value, Mapping) and isinstance(record.value.get("lines"), list):
            found |= {line["sku"] for line in record.value["lines"] if isinstance(line, Mapping) and "sku" in line}
    return found


class StoryRecord(BaseModel):
    at_ms: int  # the broker's timestamp
    topic: str
    partition: int
    offset: int
    record: str  # short record name, or the value's format for a record that is not Avro
    facts: dict[str, str]  # the fields that tell this record apart (sku, reason, amount, ...)
    value: Any  # the whole value, masked


class ScanReport(BaseModel):
    topic: str
    partitions: list[int]
    from_ms: int
    until_ms: int | None
    scanned: int
    found: int
    stopped_by: str
    message: str


class OrderStory(BaseModel):
    order_id: str
    status: str | None  # the read model's, when the order is there
    in_read_model: bool
    complete: bool  # no scan was stopped by its bound
    records: list[StoryRecord]
    scans: list[ScanReport]


def _text(value: Any) -> str:
    if isinstance(value, Mapping) and set(value) == {"amount_minor", "currency"}:
        return f"{value['amount_minor'] / 100:.2f} {value['currency']}"
    if isinstance(value, list):
        return f"{len(value)} item{'s' if len(value) != 1 else ''}"
    return json.dumps(value) if isinstance(value, Mapping) else str(value)


def facts_of(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: _text(v) for k, v in value.items() if k not in _PLUMBING and v is not None}


def story_record(record: TapRecord) -> StoryRecord:
    name = record.schema.rsplit(".", 1)[-1] if record.schema else record.value_format
    return StoryRecord(at_ms=record.timestamp_ms, topic=record.topic, partition=record.partition,
                       offset=record.offset, record=name, facts=facts_of(record.value), value=record.value)


def in_story_order(records: Iterable[TapRecord]) -> list[TapRecord]:
    """By time; within one millisecond a cause before its effect, then by topic, partition and offset."""
    return sorted(records, key=lambda r: (r.timestamp_ms, CAUSAL_RANK.get(r.schema.rsplit(".", 1)[-1] if r.schema
                                                                          else "", len(CAUSAL_RANK)),
                                          r.topic, r.partition, r.offset))


class StoryReader:
    """Runs a story's scans with the tap engine, side by side (one consumer each)."""

    def __init__(self, settings: Settings, codec: AvroCodec | None = None, max_scanned: int = DEFAULT_MAX_SCANNED):
        self.settings, self.codec, self.max_scanned = settings, codec, max_scanned

    def _scan(self, scan: StoryScan) -> tuple[list[TapRecord], ScanReport]:
        request = TapRequest(scan.topic.name, partitions=list(scan.partitions), start=AtTime(scan.from_ms),
                             until_ms=scan.until_ms, where=scan.where, max_scanned=self.max_scanned)
        with Tap(self.settings, request, codec=self.codec) as tap:
            found = list(tap.records())
            summary = tap.summary
        return found, ScanReport(topic=scan.topic.name, partitions=list(scan.partitions), from_ms=scan.from_ms,
                                 until_ms=scan.until_ms, scanned=summary.scanned, found=summary.returned,
                                 stopped_by=summary.stopped_by, message=summary.message)

    def _run(self, scans: Sequence[StoryScan]) -> list[tuple[list[TapRecord], ScanReport]]:
        with ThreadPoolExecutor(max_workers=len(scans) or 1, thread_name_prefix="story") as pool:
            return list(pool.map(self._scan, scans))

    def read(self, order_id: str, anchor: OrderAnchor | None, now_ms: int,
             lookback_s: float = DEFAULT_LOOKBACK_S) -> OrderStory:
        """The order's story (blocking: call it off the event loop)."""
        if anchor is not None:
            from_ms = anchor.created_ms - int(STORY_LEAD_S * 1000)
            until_ms = anchor.updated_ms + int(self.settings.monitor_settle_s * 1000) if anchor.ended else None
        else:
            from_ms, until_ms = now_ms - int(lookback_s * 1000), None
        scans = keyed_scans(order_id, from_ms, until_ms)
        stock = stock_scan(order_id, anchor.skus, from_ms, until_ms) if anchor and anchor.skus else None
        results = self._run(scans + ([stock] if stock else []))
        if stock is None:  # the skus from the order's own records, then their partitions
            keyed = [r for found, _ in results for r in found]
            first = min((r.timestamp_ms for r in keyed), default=from_ms)
            stock = stock_scan(order_id, skus_in(keyed), first, until_ms)
            results += self._run([stock]) if stock else []
        records = in_story_order(r for found, _ in results for r in found)
        reports = [report for _, report in results]
        return OrderStory(order_id=order_id, status=anchor.status if anchor else None, in_read_model=anchor is not None,
                          complete=all(r.stopped_by != "max-scanned" for r in reports),
                          records=[story_record(r) for r in records], scans=reports)
