"""The cart's and the wishlist's HTTP types: what clients send and see (``api.cart_converters`` maps them).

Input types forbid unknown fields, like ``api.schemas``: a client sending ``unit_price`` learns that
prices come from the catalog. Quantities are strict integers from 1 to ``MAX_QUANTITY``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from shopflow.api.schemas import MAX_QUANTITY, AddressIn, LineQuantity, Money, Sku, _In

MAX_WISHLIST = 200

Quantity = Annotated[LineQuantity, Field(description=f"Units, 1 to {MAX_QUANTITY}.")]


class CartStatus(StrEnum):
    OPEN = "OPEN"
    CHECKED_OUT = "CHECKED_OUT"  # became an order; the next change starts a new cart
    EXPIRED = "EXPIRED"  # idle past its time-to-live; emptied


class CartItemAdd(_In):
    sku: Sku
    quantity: Quantity


class CartItemSet(_In):
    quantity: Quantity


class CheckoutRequest(_In):
    payment_token: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[!-~]+$")] = Field(
        description="The payment gateway's card token; never a card number.")
    shipping_address: AddressIn | None = None


class CartLinePublic(BaseModel):
    sku: str
    quantity: int
    unit_price: Money | None = Field(description="The catalog's price now; null if the sku is no longer sold.")


class CartPublic(BaseModel):
    cart_id: str
    user_id: str
    status: CartStatus
    items: list[CartLinePublic] = Field(description="One line per sku, by sku.")
    subtotal: Money | None = Field(
        description="Sum of the lines at today's prices; null when empty, mixed currencies or a line is not sold.")
    updated_at: datetime | None = Field(description="The cart's last change; null for a cart never used.")
    checked_out_order: str | None = Field(default=None, description="The order a checked-out cart became.")
    up_to_date: bool = Field(description="False when ?wait= ran out before the cart showed the caller's last change.")


class CartAccepted(BaseModel):
    """A cart command taken: follow it with ``GET /v1/cart?wait=``."""

    cart_id: str
    event_ids: list[str] = Field(description="The commands produced (PATCH produces two).")
    location: str


class WishlistItem(BaseModel):
    sku: str
    name: str | None = Field(description="The product's name; null if it left the catalog.")
    price: Money | None
    available: bool = Field(description="Still sold (active and not deleted).")
    added_at: datetime


class Wishlist(BaseModel):
    items: list[WishlistItem] = Field(description=f"Newest first, at most {MAX_WISHLIST}.")
