"""The value types of the tables: what the saga remembers about an order, a sku and a charge.

They are stored as JSON dicts (``to_dict`` / ``from_dict``), so a changelog record is readable by
anyone and a field added later only needs a default here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Self

# How many processed event ids an entity remembers to drop redeliveries; far more than the records
# one order or one sku can see in flight at once.
PROCESSED_KEPT = 256


class _Stored:
    def to_dict(self) -> dict[str, Any]:
        # Shallow: the fields hold JSON values already, and a deep copy per stored record is hot-path cost.
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def seen(self, event_id: str) -> bool:
        return event_id in self.processed

    def remember(self, event_id: str) -> None:
        self.processed.append(event_id)
        del self.processed[:-PROCESSED_KEPT]


@dataclass
class OrderState(_Stored):
    order_id: str
    user_id: str
    status: str
    lines: list[dict] = field(default_factory=list)  # [{sku, quantity, unit_price: {amount_minor, currency}}]
    total: dict | None = None
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

    def line(self, sku: str) -> dict:
        for line in self.lines:
            if line["sku"] == sku:
                return line
        raise KeyError(sku)


@dataclass
class StockState(_Stored):
    sku: str
    on_hand: int = 0
    reserved: int = 0
    # order_id -> {"quantity": n, "status": RESERVED | REJECTED | COMMITTED | RELEASED}
    reservations: dict[str, dict] = field(default_factory=dict)
    processed: list[str] = field(default_factory=list)

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


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
