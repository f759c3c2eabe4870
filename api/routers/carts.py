"""The cart (``/v1/cart``): commands to the carts agent, the cart read from the workers, checkout.

One cart per user, its id the user's id, so a customer can only ever reach their own cart. The
cart's state is in the carts agent's table (RocksDB, in the Faust workers); a change is a command
on ``cart-commands``, answered **202** once the broker has it. ``GET /v1/cart?wait=S`` gives
read-your-writes: it polls the worker view until the cart reflects the caller's last accepted
change (``api.carts_store``), or S seconds have passed (``up_to_date`` says which).

- ``POST /v1/cart/items`` adds units of a sku (AddCartItem).
- ``PATCH /v1/cart/items/{sku}`` sets a line's quantity: RemoveCartItem (the whole line) then
  AddCartItem (the new quantity), on the same key so the agent applies them in that order, the add
  1 ms later so the read-your-writes mark is the add's. Not a delta computed from a read, which would
  race with the agent. A failure between the two is a 503: the retry (same Idempotency-Key) produces
  both again, with the same event ids, and converges.
- ``DELETE /v1/cart/items/{sku}`` removes the line; ``DELETE /v1/cart`` clears the cart.
- ``POST /v1/cart/checkout`` reads the cart (once it reflects the caller's changes), places its
  lines as ``POST /v1/orders`` does (``api.ordering``: the order-lines rule, catalog prices,
  PlaceOrder), then produces CheckoutCart(order_id) (the agent closes the cart), and answers 202 with
  the order's Location. An empty cart is 409, and so is a cart the order-lines rule refuses.

Skus added must be in the catalog and sold (422 otherwise); quantities are 1 to ``MAX_QUANTITY``.
A cart stays an order ``POST /v1/orders`` would take (``topologies.orders.lines_problem``): an add or
set that would give it more than ``MAX_ORDER_LINES`` skus, or a line more than ``MAX_LINE_QUANTITY``
units, is 409. That check reads the cart as the workers have it now (a change still queued is not
counted, nor is the cart checked when no worker answers); checkout applies the rule again, for good.
Event ids (and the checkout's order id) derive from the user, the Idempotency-Key and the request,
so a retry of a command whose outcome was lost is deduplicated by the agents instead of applied twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import redis.exceptions
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from shopflow.api import ordering
from shopflow.api.cart_converters import (
    cart_id_of,
    cart_items,
    cart_public,
    now_ms_time,
    to_add_cart_item,
    to_checkout_cart,
    to_clear_cart,
    to_remove_cart_item,
)
from shopflow.api.cart_schemas import CartAccepted, CartItemAdd, CartItemSet, CartPublic, CheckoutRequest
from shopflow.api.carts_store import (
    CartMarks,
    WorkersUnavailable,
    checkout_lock,
    checkout_unlock,
    fetch_cart,
    wait_for_cart,
)
from shopflow.api.dependencies import CurrentUser, Edge, EdgeDep, IdempotencyKey
from shopflow.api.errors import errors
from shopflow.api.idempotency import Outcome, fingerprint
from shopflow.api.ordering import NewOrder
from shopflow.api.orders_store import CatalogUnavailable
from shopflow.api.schemas import MAX_WAIT_S, OrderAccepted, OrderLineIn
from shopflow.catalog import reader as catalog_reader
from shopflow.catalog.products import SKU_PATTERN
from shopflow.schemas.records import AvroRecord, ms_of
from shopflow.topologies.orders import lines_problem

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/cart", tags=["cart"])

CART_LOCATION = "/v1/cart"
# How long checkout waits for the cart to show the caller's last change before answering 503.
CHECKOUT_WAIT_S = 5.0
# Event ids derived from (user, Idempotency-Key, request): a retry reuses them.
_IDS = uuid.UUID("9d0f3c38-5a2e-4f57-9a7e-3c1d2b6a0c41")

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="The line's sku.")]
_LOCATION = {"Location": {"description": "Where to follow the cart (GET /v1/cart?wait=).",
                          "schema": {"type": "string"}}}
# 409: an add or set the order-lines rule refuses, or a duplicate of a command still running.
_COMMAND_ERRORS = errors(400, 401, 409, 413, 422, 429, 503)


def _ids(user_id: str, key: str, fp: str) -> Callable[[object], str]:
    return lambda n: str(uuid.uuid5(_IDS, f"{user_id}|{key}|{fp}|{n}"))


def _unavailable(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the cart service is unavailable: {exc}",
                         {"Retry-After": "2"})


def _marks(edge: Edge) -> CartMarks:
    return CartMarks(edge.redis)  # a script object only: registration is lazy (EVALSHA, then EVAL once)


async def _check_sku(edge: Edge, sku: str) -> None:
    try:
        problem = await catalog_reader.sellable(edge.prices, sku)
    except CatalogUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), {"Retry-After": "5"}) from None
    if problem is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)


async def _check_room(edge: Edge, user_id: str, sku: str, quantity: int, *, replace: bool) -> None:
    """409 when the cart with this change would be an order ``POST /v1/orders`` refuses (``replace``: the
    line is set to ``quantity``, otherwise raised by it). Reads the cart as the workers have it now."""
    try:
        items = cart_items(await fetch_cart(edge.workers, cart_id_of(user_id)))
    except WorkersUnavailable:
        return  # the command is accepted without the cart (as before this check); checkout applies the rule
    items[sku] = quantity if replace else items.get(sku, 0) + quantity
    problem = lines_problem(items.items())
    if problem is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"your cart would not make an order: {problem}")


async def _send(edge: Edge, user_id: str, *commands: AvroRecord) -> Response:
    """Produce the commands in order (keyed by the cart), raise the cart's mark, answer 202."""
    cart_id = cart_id_of(user_id)
    for command in commands:
        await edge.producer.send(edge.topics.cart_commands, cart_id, command)
    try:
        last = commands[-1]  # the latest: commands go in order with rising occurred_at
        await _marks(edge).raise_to(cart_id, ms_of(last.occurred_at), last.event_id)  # type: ignore[attr-defined]
    except redis.exceptions.RedisError as exc:  # accepted; only ?wait= loses its mark
        log.warning("cart %s: command accepted but its mark was not written: %r", cart_id, exc)
    body = CartAccepted(cart_id=cart_id, event_ids=[c.event_id for c in commands],  # type: ignore[attr-defined]
                        location=CART_LOCATION)
    return JSONResponse(body.model_dump(mode="json"), status.HTTP_202_ACCEPTED, headers={"Location": CART_LOCATION})


@router.get("", response_model=CartPublic, responses=errors(401, 422, 429, 503))
async def my_cart(
    user: CurrentUser, edge: EdgeDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description=(
        "Seconds to wait (at most 20) until the cart reflects the caller's last accepted change."))] = 0,
) -> CartPublic:
    """My cart with today's prices. An expired cart shows EXPIRED and empty; a checked-out one, its order."""
    cart_id = cart_id_of(user.user_id)
    mark = await _marks(edge).get(cart_id)
    try:
        view, up_to_date = await wait_for_cart(edge.workers, cart_id, mark, wait)
    except WorkersUnavailable as exc:
        raise _unavailable(exc) from None
    try:
        priced = await catalog_reader.selling_prices(edge.prices, cart_items(view))
    except CatalogUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), {"Retry-After": "5"}) from None
    return cart_public(user_id=user.user_id, view=view, prices=priced, up_to_date=up_to_date)


@router.post("/items", status_code=status.HTTP_202_ACCEPTED, response_model=CartAccepted,
             responses={202: {"headers": _LOCATION}, **_COMMAND_ERRORS})
async def add_item(body: CartItemAdd, request: Request, user: CurrentUser, edge: EdgeDep,
                   idempotency_key: IdempotencyKey) -> Response:
    """Add units of a sku to my cart (the line is created, or its quantity raised)."""
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    ids = _ids(user.user_id, idempotency_key, fp)

    async def handle() -> Response:
        await _check_sku(edge, body.sku)
        await _check_room(edge, user.user_id, body.sku, body.quantity, replace=False)
        command = to_add_cart_item(user_id=user.user_id, sku=body.sku, quantity=body.quantity,
                                   occurred_at=now_ms_time(), event_id=ids(0))
        return await _send(edge, user.user_id, command)

    return await edge.idempotency.run(user.user_id, idempotency_key, fp, handle)


@router.patch("/items/{sku}", status_code=status.HTTP_202_ACCEPTED, response_model=CartAccepted,
              responses={202: {"headers": _LOCATION}, **_COMMAND_ERRORS})
async def set_item(sku: SkuPath, body: CartItemSet, request: Request, user: CurrentUser, edge: EdgeDep,
                   idempotency_key: IdempotencyKey) -> Response:
    """Set a line's quantity (the line is created if the cart has none for the sku)."""
    fp = fingerprint("PATCH", request.url.path, body.model_dump(mode="json"))
    ids = _ids(user.user_id, idempotency_key, fp)

    async def handle() -> Response:
        await _check_sku(edge, sku)
        await _check_room(edge, user.user_id, sku, body.quantity, replace=True)
        at = now_ms_time()
        remove = to_remove_cart_item(user_id=user.user_id, sku=sku, quantity=None, occurred_at=at, event_id=ids(0))
        add = to_add_cart_item(user_id=user.user_id, sku=sku, quantity=body.quantity,
                               occurred_at=at + timedelta(milliseconds=1), event_id=ids(1))
        return await _send(edge, user.user_id, remove, add)

    return await edge.idempotency.run(user.user_id, idempotency_key, fp, handle)


@router.delete("/items/{sku}", status_code=status.HTTP_202_ACCEPTED, response_model=CartAccepted,
               responses={202: {"headers": _LOCATION}, **_COMMAND_ERRORS})
async def remove_item(sku: SkuPath, request: Request, user: CurrentUser, edge: EdgeDep,
                      idempotency_key: IdempotencyKey) -> Response:
    """Remove a sku's line from my cart (any sku: a product that left the catalog can be removed too)."""
    fp = fingerprint("DELETE", request.url.path, None)
    ids = _ids(user.user_id, idempotency_key, fp)

    async def handle() -> Response:
        command = to_remove_cart_item(user_id=user.user_id, sku=sku, quantity=None, occurred_at=now_ms_time(),
                                      event_id=ids(0))
        return await _send(edge, user.user_id, command)

    return await edge.idempotency.run(user.user_id, idempotency_key, fp, handle)


@router.delete("", status_code=status.HTTP_202_ACCEPTED, response_model=CartAccepted,
               responses={202: {"headers": _LOCATION}, **_COMMAND_ERRORS})
async def clear_cart(request: Request, user: CurrentUser, edge: EdgeDep, idempotency_key: IdempotencyKey) -> Response:
    """Empty my cart."""
    fp = fingerprint("DELETE", request.url.path, None)
    ids = _ids(user.user_id, idempotency_key, fp)

    async def handle() -> Response:
        return await _send(edge, user.user_id, to_clear_cart(user_id=user.user_id, occurred_at=now_ms_time(),
                                                             event_id=ids(0)))

    return await edge.idempotency.run(user.user_id, idempotency_key, fp, handle)


@router.post("/checkout", status_code=status.HTTP_202_ACCEPTED, response_model=OrderAccepted,
             responses={202: {"headers": ordering.LOCATION_HEADER}, **errors(400, 401, 409, 413, 422, 429, 503)})
async def checkout(body: CheckoutRequest, request: Request, user: CurrentUser, edge: EdgeDep,
                   idempotency_key: IdempotencyKey) -> Response:
    """Turn my cart into an order at today's prices; follow the order at the Location."""
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    ids = _ids(user.user_id, idempotency_key, fp)
    cart_id = cart_id_of(user.user_id)

    async def handle() -> Outcome:
        lock = await checkout_lock(edge.redis, cart_id)
        if lock is None:
            raise HTTPException(status.HTTP_409_CONFLICT, "a checkout of this cart is already in progress",
                                {"Retry-After": "1"})
        try:
            return await _checkout(edge, user.user_id, body, ids)
        finally:
            try:
                await checkout_unlock(edge.redis, cart_id, lock)
            except redis.exceptions.RedisError as exc:  # the lease runs out on its own
                log.warning("cart %s: checkout lock not released: %r", cart_id, exc)

    return await edge.idempotency.run(user.user_id, idempotency_key, fp, handle)


async def _checkout(edge: Edge, user_id: str, body: CheckoutRequest, ids: Callable[[object], str]) -> Outcome:
    cart_id = cart_id_of(user_id)
    mark = await _marks(edge).get(cart_id)
    try:
        view, up_to_date = await wait_for_cart(edge.workers, cart_id, mark, CHECKOUT_WAIT_S)
    except WorkersUnavailable as exc:
        raise _unavailable(exc) from None
    items = cart_items(view)
    if not up_to_date:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "the cart does not show your last change yet; retry the checkout shortly",
                            {"Retry-After": "2"})
    if view is not None and view.get("status") == "CHECKED_OUT" and view.get("checked_out_order"):
        raise HTTPException(status.HTTP_409_CONFLICT, f"your cart is empty: it was checked out as order "
                                                      f"{view['checked_out_order']}; add items to start a new one")
    if not items:
        expired = view is not None and view.get("status") == "EXPIRED"
        raise HTTPException(status.HTTP_409_CONFLICT, "your cart expired and was emptied; add items first" if expired
                            else "your cart is empty; add items with POST /v1/cart/items first")
    problem = lines_problem(items.items())
    if problem is not None:  # the cart's state, not a malformed request
        raise HTTPException(status.HTTP_409_CONFLICT, problem + ordering.FROM_CART_HINT)
    order_id = ids("order")
    at = now_ms_time()
    # Not validated again: each line was when added, and the cart as a whole just now.
    lines = [OrderLineIn.model_construct(sku=sku, quantity=q) for sku, q in sorted(items.items())]
    placed = await ordering.place_order(edge, NewOrder(
        order_id=order_id, user_id=user_id, lines=lines, payment_token=body.payment_token,
        shipping_address=body.shipping_address, occurred_at=at, from_cart=True, event_id=ids("place")))
    close = to_checkout_cart(user_id=user_id, order_id=order_id, body=body, occurred_at=at, event_id=ids("close"))
    await edge.producer.send(edge.topics.cart_commands, cart_id, close)
    try:
        await _marks(edge).raise_to(cart_id, ms_of(close.occurred_at), close.event_id)
    except redis.exceptions.RedisError as exc:
        log.warning("cart %s: checkout accepted but its mark was not written: %r", cart_id, exc)
    return placed  # the order's marker is written with the stored response
