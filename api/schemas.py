"""The edge's request and response types: what clients send and see, kept apart from the Avro records.

These are the HTTP contract (published in the OpenAPI document); ``api.converters`` turns them into
``shopflow.schemas.records`` dataclasses and back, field by field, so either side can change without
the other following by accident. Input types forbid unknown fields: a client sending ``unit_price``
learns that prices are not taken from clients instead of having it silently ignored.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from shopflow.api.security import Role
from shopflow.catalog.products import NOT_BLANK_PATTERN, SKU_PATTERN, SPACE_CHARS
from shopflow.topologies.orders import MAX_LINE_QUANTITY as MAX_QUANTITY
from shopflow.topologies.orders import MAX_ORDER_LINES as MAX_LINES
from shopflow.topologies.orders import ORDER_STATUSES
from shopflow.topologies.saga import CANCELLED, CONFIRMED, PENDING, REFUNDED

MAX_WAIT_S = 20.0

# No control characters in any text: they have no business in names or addresses, and PostgreSQL
# refuses NUL outright.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
# Text is trimmed (pydantic's strip: Unicode White_Space, ``SPACE_CHARS``) before its length is checked, so
# required text needs a character that is neither a control nor a space: the document says so.
_NOT_BLANK = NOT_BLANK_PATTERN
_ADDR = rf"[^@\x00-\x1f\x7f{SPACE_CHARS}]+"


def as_sent(max_length: int) -> BeforeValidator:
    """The document's maxLength holds for text as the client sent it: checked before the trim, so a value
    padded with spaces past the limit is refused as the document says, not accepted once trimmed."""

    def check(value: object) -> object:
        if isinstance(value, str) and len(value) > max_length:
            raise PydanticCustomError("string_too_long", "String should have at most {max_length} characters",
                                      {"max_length": max_length})
        return value

    return BeforeValidator(check)


Email = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=254,
                                         pattern=rf"^[{SPACE_CHARS}]*{_ADDR}@{_ADDR}\.{_ADDR}[{SPACE_CHARS}]*$"),
                  as_sent(254)]
Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


def whole_number(value: object) -> object:
    # JSON does not tell 3 from 3.0, and JSON Schema's "integer" admits both: take 3.0 as 3, refuse 3.5.
    return int(value) if type(value) is float and value.is_integer() else value


# Integers in JSON: numbers without a fraction (not strings, not booleans), bounded.
LineQuantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY), BeforeValidator(whole_number)]
StockDelta = Annotated[StrictInt, Field(ge=-1_000_000, le=1_000_000), BeforeValidator(whole_number)]


# Free text: trimmed, bounded, without control characters, and not blank when required.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NOT_BLANK),
                 as_sent(200)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=_NOT_BLANK),
                      as_sent(100)]
OptionalText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200, pattern=_NO_CONTROL),
                         as_sent(200)]
PostalCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20, pattern=_NOT_BLANK),
                       as_sent(20)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ---------------------------------------------------------------------------------------------


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is, e.g. [\"body\", \"lines\", 0, \"quantity\"].")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx: ``detail`` says what is wrong (a sentence, or one entry per invalid field)."""

    detail: str | list[FieldError]


# -- accounts -------------------------------------------------------------------------------------------


class RegisterRequest(_In):
    email: Email
    password: Annotated[str, StringConstraints(min_length=8, max_length=128)] = Field(
        description="8 to 128 characters.")
    display_name: ShortText | None = None


class LoginRequest(_In):
    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class RefreshRequest(_In):
    refresh_token: Token


class LogoutRequest(_In):
    refresh_token: Token | None = Field(default=None, description="Also revoke this refresh token (recommended).")


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token is good for.")


class UserPublic(BaseModel):
    id: str
    email: str
    display_name: str | None
    roles: list[Role] = Field(description="What the account may do: `customer` from sign-up; `admin`, `ops` and "
                                          "`data` are granted (`shopflow users grant EMAIL ROLE`).")
    created_at: datetime


# -- orders ---------------------------------------------------------------------------------------------


class Money(BaseModel):
    amount_minor: int = Field(description="Integer count of the currency's minor unit (1999 EUR = 19.99 EUR).")
    currency: str


class OrderLineIn(_In):
    sku: Sku
    quantity: LineQuantity


class AddressIn(_In):
    name: Text
    line1: Text
    line2: OptionalText | None = None
    city: ShortText
    postal_code: PostalCode
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = Field(description="ISO 3166-1 alpha-2.")


class OrderCreate(_In):
    """An order from lines; prices come from the catalog, never from the client."""

    lines: list[OrderLineIn] = Field(min_length=1, max_length=MAX_LINES, description="One line per sku.")
    payment_token: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[!-~]+$")] = Field(
        description="The payment gateway's card token; never a card number.")
    shipping_address: AddressIn | None = None

    @field_validator("lines")
    @classmethod
    def _one_line_per_sku(cls, lines: list[OrderLineIn]) -> list[OrderLineIn]:
        seen: set[str] = set()
        for line in lines:
            if line.sku in seen:
                raise ValueError(f"sku {line.sku} appears in more than one line; put its whole quantity in one line")
            seen.add(line.sku)
        return lines


class OrderStatus(StrEnum):
    """ACCEPTED, then the read model's statuses (``topologies.orders.ORDER_STATUSES``, from the saga)."""

    ACCEPTED = "ACCEPTED"  # the edge took the command; the saga has not reported on it yet
    # Spelled out, not generated, so a type checker knows the members; checked against the saga below.
    PENDING = PENDING
    CONFIRMED = CONFIRMED
    CANCELLED = CANCELLED
    REFUNDED = REFUNDED


if [s.value for s in OrderStatus] != [OrderStatus.ACCEPTED, *ORDER_STATUSES]:
    raise ImportError(f"OrderStatus is not ACCEPTED + the saga's published statuses {ORDER_STATUSES}")


class OrderLinePublic(BaseModel):
    sku: str
    quantity: int
    unit_price: Money


class OrderPublic(BaseModel):
    order_id: str
    user_id: str
    status: OrderStatus
    lines: list[OrderLinePublic]
    total: Money | None
    reason: str | None = Field(default=None, description="Why a cancelled order was cancelled.")
    detail: str | None = None
    created_at: datetime
    updated_at: datetime


class OrderAccepted(BaseModel):
    order_id: str
    status: Literal[OrderStatus.ACCEPTED] = OrderStatus.ACCEPTED
    location: str = Field(description="Where to follow the order (also the Location header).")
    lines: list[OrderLinePublic]
    total: Money


class CancelAccepted(BaseModel):
    order_id: str
    location: str
    event_id: str


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null on the last page.")


# -- admin ----------------------------------------------------------------------------------------------


class StockAdjust(_In):
    delta: StockDelta = Field(
        description="Units added (positive) or removed (negative); not zero.",
        json_schema_extra={"not": {"const": 0}})
    reason: Text

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("delta must not be zero")
        return delta


class StockAdjustAccepted(BaseModel):
    event_id: str
    sku: str
    delta: int


# -- health ---------------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, str] = Field(default_factory=dict)
