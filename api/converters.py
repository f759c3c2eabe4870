"""Explicit conversions between the edge's HTTP types (``api.schemas``) and the Avro records.

One function per direction and type, field by field: nothing is copied by name-matching, so a
renamed field on either side fails here (and in ``tests/api/test_converters.py``) rather than on the
wire. Roles are lower case on the HTTP side (``customer``) and Avro enum symbols (``CUSTOMER``) on
the wire; prices are always catalog prices (``PricedLine``), never client input.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shopflow.access import Role, known
from shopflow.api.schemas import (
    AddressIn,
    Money,
    OrderAccepted,
    OrderLinePublic,
    OrderPublic,
    OrderStatus,
    StockAdjust,
    UserPublic,
)
from shopflow.schemas import inventory as inventory_records
from shopflow.schemas import orders as order_records
from shopflow.schemas import records
from shopflow.schemas import users as user_records


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A client's line with the catalog's unit price."""

    sku: str
    quantity: int
    unit_price_minor: int
    currency: str


# -- to the wire ----------------------------------------------------------------------------------------


def role_to_record(roles: Collection[Role]) -> user_records.Role:
    """The wire knows CUSTOMER and ADMIN only: an account with the admin role is ADMIN."""
    return user_records.Role.ADMIN if Role.ADMIN in roles else user_records.Role.CUSTOMER


def address_to_record(address: AddressIn) -> records.Address:
    return records.Address(name=address.name, line1=address.line1, line2=address.line2 or None,
                           city=address.city, postal_code=address.postal_code, country=address.country)


def line_to_record(line: PricedLine) -> records.OrderLine:
    return records.OrderLine(line.sku, line.quantity, records.Money(line.unit_price_minor, line.currency))


def to_place_order(*, order_id: str, user_id: str, lines: Sequence[PricedLine], currency: str,
                   payment_token: str, shipping_address: AddressIn | None, occurred_at: datetime,
                   event_id: str | None = None) -> order_records.PlaceOrder:
    return order_records.PlaceOrder(
        event_id=event_id or str(uuid.uuid4()),
        order_id=order_id,
        user_id=user_id,
        lines=tuple(line_to_record(line) for line in lines),
        shipping_address=address_to_record(shipping_address) if shipping_address else None,
        payment_token=payment_token,
        currency=currency,
        occurred_at=occurred_at,
    )


def to_cancel_order(*, order_id: str, requested_by: str, occurred_at: datetime,
                    event_id: str | None = None) -> order_records.CancelOrder:
    return order_records.CancelOrder(event_id or str(uuid.uuid4()), order_id, requested_by, occurred_at)


def to_stock_adjusted(*, sku: str, body: StockAdjust, adjusted_by: str, occurred_at: datetime,
                      event_id: str | None = None) -> inventory_records.StockAdjusted:
    return inventory_records.StockAdjusted(event_id=event_id or str(uuid.uuid4()), sku=sku, delta=body.delta,
                                 reason=body.reason, adjusted_by=adjusted_by, occurred_at=occurred_at)


def to_user_registered(user: UserPublic, *, event_id: str | None = None) -> user_records.UserRegistered:
    return user_records.UserRegistered(event_id=event_id or str(uuid.uuid4()), user_id=user.id, email=user.email,
                                  display_name=user.display_name, role=role_to_record(user.roles),
                                  occurred_at=user.created_at)


# -- from the wire and the read model -------------------------------------------------------------------


def money_public(money: records.Money) -> Money:
    return Money(amount_minor=money.amount_minor, currency=money.currency)


def line_public(line: records.OrderLine) -> OrderLinePublic:
    return OrderLinePublic(sku=line.sku, quantity=line.quantity, unit_price=money_public(line.unit_price))


def order_total(place: order_records.PlaceOrder) -> Money:
    return Money(amount_minor=sum(line.quantity * line.unit_price.amount_minor for line in place.lines),
                 currency=place.currency)


def order_accepted(place: order_records.PlaceOrder, location: str) -> OrderAccepted:
    return OrderAccepted(order_id=place.order_id, location=location,
                         lines=[line_public(line) for line in place.lines], total=order_total(place))


def accepted_order_view(place: order_records.PlaceOrder) -> OrderPublic:
    """What GET shows of an order the edge accepted before the saga reported on it."""
    return OrderPublic(order_id=place.order_id, user_id=place.user_id, status=OrderStatus.ACCEPTED,
                       lines=[line_public(line) for line in place.lines], total=order_total(place),
                       created_at=place.occurred_at, updated_at=place.occurred_at)


def order_from_row(row: Mapping[str, Any]) -> OrderPublic:
    """An ``orders_view`` row (``lines`` as the projection stored it: Avro-shaped dicts)."""
    lines = row["lines"]
    if isinstance(lines, str):
        lines = json.loads(lines)
    total = (Money(amount_minor=row["total_minor"], currency=row["currency"])
             if row["total_minor"] is not None and row["currency"] is not None else None)
    return OrderPublic(
        order_id=row["order_id"], user_id=row["user_id"], status=OrderStatus(row["status"]),
        lines=[OrderLinePublic(sku=line["sku"], quantity=line["quantity"],
                               unit_price=Money(**line["unit_price"])) for line in lines],
        total=total, reason=row["reason"], detail=row["detail"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def user_from_row(row: Mapping[str, Any]) -> UserPublic:
    return UserPublic(id=str(row["id"]), email=row["email"], display_name=row["display_name"],
                      roles=sorted(known(Role, row["roles"])), created_at=row["created_at"])
