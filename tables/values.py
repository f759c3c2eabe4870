"""The value types of the tables: what the saga remembers about an order, a sku and a charge.

They are stored as JSON (``encode`` / ``decode``: encoded once, the same bytes go to the store and
the changelog), so a changelog record is readable by anyone and a field added later only needs a
default here.

Every entity's state is bounded: its size does not grow with the history it has seen. An order or
a charge lives through a handful of records; a sku's state is its counters and the lines it holds
right now, and each settled line is a row of its own (``Reservation``, keyed ``sku<US>order_id`` in
the sku's partition), dropped a while after it settled (``SETTLED_KEEP_MS``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol, Self

import orjson

from shopflow.schemas.records import ms_of

# How many processed event ids an entity remembers to drop redeliveries; far more than the records
# one order or one cart sees in its life.
PROCESSED_KEPT = 256
# How many StockAdjusted ids a sku remembers: adjustments are rare (admin edits, new listings).
ADJUSTMENTS_KEPT = 32
# How long a settled reservation row (rejected, committed, released) is kept after it settled, so a
# request sent again (an orders agent re-emitting after its own crash) meets it and is answered
# instead of applied again. It must exceed the longest such delay: a failover and its replay.
SETTLED_KEEP_MS = 15 * 60 * 1000
# Between a sku and an order id in a reservation row's key: a byte no sku or order id contains.
RESERVATION_SEPARATOR = "\x1f"


def encode(value: dict[str, Any]) -> bytes:
    # A record an order keeps to emit again holds its timestamps as datetimes: stored as epoch ms, the
    # Avro timestamp-millis value, which ``AvroRecord.from_avro`` takes back.
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def stored_items(db: Any) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """The (key, value) entries of one table partition's RocksDB database, as they are stored here."""
    for key, raw in db.items():
        yield key.decode(), decode(raw)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return ms_of(value)
    raise TypeError(f"{type(value).__name__} is not stored in a table")


def decode(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else orjson.loads(raw)


class _Stored:
    processed: list[str]  # the entity's processed event ids (a field of each entity that dedupes by them)

    def to_dict(self) -> dict[str, Any]:
        # Shallow: the fields hold JSON values already, and a deep copy per stored record is hot-path cost.
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = _field_names(cls)
        return cls(**{k: v for k, v in data.items() if k in names})

    def seen(self, event_id: str) -> bool:
        return event_id in self.processed

    def remember(self, event_id: str) -> None:
        _keep_last(self.processed, event_id, PROCESSED_KEPT)


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    # A stored value may hold keys a newer version wrote: only the class's own fields are read.
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))
    return names


def _keep_last(ids: list[str], event_id: str, kept: int) -> None:
    """A bounded memory of ids: the newest ``kept`` of them."""
    ids.append(event_id)
    del ids[:-kept]


class Emitted(Protocol):
    """A record an entity emitted (``streams.runtime.Output``), kept to be emitted again."""

    def stored(self) -> list[Any]: ...


@dataclass
class OrderState(_Stored):
    order_id: str
    user_id: str
    status: str
    lines: list[dict[str, Any]] = field(default_factory=list)  # [{sku, quantity, unit_price: Money's dict}]
    total: dict[str, Any] | None = None  # Money's dict: {amount_minor, currency}
    payment_token: str = ""
    reason: str | None = None
    reserved: list[str] = field(default_factory=list)  # skus answered StockReserved
    released: list[str] = field(default_factory=list)  # skus a ReleaseStock was sent for
    payment_id: str | None = None  # set once a capture is known
    refund_requested: bool = False
    deadline_ms: int | None = None  # the current state's step deadline, if it has one
    deadline_step: str | None = None
    created_ms: int = 0
    updated_ms: int = 0
    path: list[str] = field(default_factory=list)  # every state the order went through, in order
    processed: list[str] = field(default_factory=list)
    # What each processed record caused, by its event id: [[topic, record, value], ...]. A record met
    # again (redelivered after a crash that kept the state but lost the answers) emits the same again.
    caused: dict[str, list[Any]] = field(default_factory=dict)

    def remember(self, event_id: str, outputs: Iterable[Emitted] = ()) -> None:
        super().remember(event_id)
        if outputs:
            self.caused[event_id] = [o.stored() for o in outputs]
        for forgotten in [e for e in self.caused if e not in self.processed]:
            del self.caused[forgotten]

    def line(self, sku: str) -> dict:
        for line in self.lines:
            if line["sku"] == sku:
                return line
        raise KeyError(sku)


@dataclass
class StockState(_Stored):
    """A sku's stock and its open reservations, in one value so they change together.

    Its size follows what is held right now (each open reservation holds a unit at least, so there
    are never more than ``on_hand``), never the orders it has seen: a settled line leaves ``open`` for
    a ``Reservation`` row of its own. ``offset`` is the stock-requests offset of the last record
    applied: a record delivered again after a crash (an offset not above it) is known to be applied.
    ``last_row`` is the row that record wrote after this value, so it can be written again if the
    crash lost it (records of one changelog partition land in order: an earlier row cannot be lost
    while this value was kept).
    """

    sku: str
    on_hand: int = 0
    reserved: int = 0  # the sum of ``open``
    open: dict[str, int] = field(default_factory=dict)  # order id -> units held for it
    offset: int = -1
    last_row: dict | None = None
    adjustments: list[str] = field(default_factory=list)  # the last StockAdjusted ids applied
    # Low stock (LowStock events): the sku's own threshold (None: the shop's default), whether available is
    # at or below it now (True until it has once been above: a sku listed with no stock is not "running
    # low"), and the LowStock the record at ``offset`` emitted, to emit again if that record comes again.
    low_stock_threshold: int | None = None
    below_threshold: bool = True
    last_alert: list | None = None

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def adjusted(self, event_id: str) -> bool:
        return event_id in self.adjustments

    def remember_adjustment(self, event_id: str) -> None:
        _keep_last(self.adjustments, event_id, ADJUSTMENTS_KEPT)


@dataclass
class Reservation(_Stored):
    """A settled order line of a sku: the inventory's memory of what it did for that order, so a request
    delivered again is answered, not applied again, until ``settled_ms + SETTLED_KEEP_MS``.

    REJECTED: refused (the answer is repeated); COMMITTED: consumed by the confirmed order (its units
    left on_hand); RELEASED: given back (quantity 0: released before any request was met).
    """

    sku: str
    order_id: str
    quantity: int
    status: str  # REJECTED | COMMITTED | RELEASED
    available: int = 0  # units free when a REJECTED line was refused (repeated in the answer)
    reason: str = "OUT_OF_STOCK"  # why a REJECTED line was refused
    settled_ms: int | None = None

    def expired(self, now_ms: int, keep_ms: int = SETTLED_KEEP_MS) -> bool:
        return self.settled_ms is not None and self.settled_ms + keep_ms <= now_ms


def reservation_key(sku: str, order_id: str) -> str:
    return f"{sku}{RESERVATION_SEPARATOR}{order_id}"


def is_reservation_key(key: str) -> bool:
    return RESERVATION_SEPARATOR in key


@dataclass
class PaymentState(_Stored):
    order_id: str
    status: str = "NEW"  # NEW | CAPTURED | FAILED | TIMED_OUT | REFUNDED
    payment_id: str | None = None
    amount: dict | None = None
    failure: str | None = None
    refund_id: str | None = None
    charges: int = 0  # captures made at the gateway for this order; more than 1 is a double charge
    history: list[dict] = field(default_factory=list)  # [{at, what, detail}]
    processed: list[str] = field(default_factory=list)


@dataclass
class CartState(_Stored):
    cart_id: str
    user_id: str
    items: dict[str, int] = field(default_factory=dict)  # sku -> quantity
    status: str = "OPEN"  # OPEN | CHECKED_OUT | EXPIRED
    updated_ms: int = 0  # last change; the edge's read-your-writes compares its command's time with it
    expires_ms: int | None = None  # when an idle open cart with items expires
    checked_out_order: str | None = None
    processed: list[str] = field(default_factory=list)
