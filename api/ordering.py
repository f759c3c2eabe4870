"""Placing an order: the one service behind ``POST /v1/orders`` and ``POST /v1/cart/checkout``.

Both routes hand it lines that meet the order-lines rule (``topologies.orders.lines_problem``, the rule
the orders agent applies: ``OrderCreate``'s schema declares it for a request's lines, checkout checks
the cart's). It prices them from the catalog, produces the PlaceOrder (answered once the broker has it,
acks=all) and returns the 202 with the order's ``Location`` together with the accepted-order marker that
``GET ?wait=`` reads, for the idempotency store to write with the stored response. Nothing is produced
when a check fails.

A sku the catalog no longer sells is a 422; for lines read from the cart the client is told to change
the cart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse

from shopflow.api.converters import accepted_order_view, order_accepted, to_place_order
from shopflow.api.dependencies import Edge
from shopflow.api.idempotency import Outcome
from shopflow.api.orders_store import CatalogUnavailable, PricingError, price_lines
from shopflow.api.schemas import AddressIn, OrderLineIn

# The Location header of a 202 that accepted an order, as the OpenAPI document declares it.
LOCATION_HEADER = {"Location": {"description": "Where to follow the order.", "schema": {"type": "string"}}}
FROM_CART_HINT = "; change the cart and check out again"


def location(order_id: str) -> str:
    return f"/v1/orders/{order_id}"


@dataclass(frozen=True, slots=True)
class NewOrder:
    """What a customer asks to order; prices are not part of it (they come from the catalog)."""

    order_id: str
    user_id: str
    lines: Sequence[OrderLineIn]
    payment_token: str
    shipping_address: AddressIn | None
    occurred_at: datetime
    from_cart: bool = False  # the lines are the cart's, not the request's (see the module's doc)
    event_id: str | None = None  # derived from the request when a retry must produce the same command


def _refused(order: NewOrder, status_code: int, problem: str) -> HTTPException:
    return HTTPException(status_code, problem + FROM_CART_HINT if order.from_cart else problem)


async def place_order(edge: Edge, order: NewOrder) -> Outcome:
    """Check, price and produce the order; the 202 to answer and the marker to leave with it."""
    try:
        priced, currency = await price_lines(edge.prices, order.lines)
    except PricingError as exc:
        raise _refused(order, status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except CatalogUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), {"Retry-After": "5"}) from None
    command = to_place_order(order_id=order.order_id, user_id=order.user_id, lines=priced, currency=currency,
                             payment_token=order.payment_token, shipping_address=order.shipping_address,
                             occurred_at=order.occurred_at, event_id=order.event_id)
    await edge.producer.send(edge.topics.order_commands, order.order_id, command)
    where = location(order.order_id)
    response = JSONResponse(order_accepted(command, where).model_dump(mode="json"), status.HTTP_202_ACCEPTED,
                            headers={"Location": where})
    return Outcome(response, (edge.markers.placed_write(accepted_order_view(command)),))
