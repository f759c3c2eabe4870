"""What a product is and the rules its fields follow: the one owner of the product limits and checks.

Each field has one check here (``check_name``, ``check_price_minor``, ...) that trims what it may and
raises ``InvalidInput`` naming the field with a message that says what is allowed. The repository runs
them through ``validate_product`` before anything is written; the edge's request types are built from
the same checks (``Rule``), so an HTTP client and a caller of the repository are refused with the
same words, and the OpenAPI document declares the same limits (``*_SCHEMA`` beside each check).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Final

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from shopflow.catalog.errors import InvalidInput

SKU_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SLUG_PATTERN: Final = r"^[a-z0-9]+(-[a-z0-9]+)*$"
# A category path is the slugs from the root joined by '/', e.g. audio/headphones.
CATEGORY_PATH_PATTERN: Final = r"^[a-z0-9]+(-[a-z0-9]+)*(/[a-z0-9]+(-[a-z0-9]+)*)*$"
# No control characters in names: they have no business there, and PostgreSQL refuses NUL outright.
NO_CONTROL_PATTERN: Final = r"^[^\x00-\x1f\x7f]*$"
# What a trim removes (Unicode White_Space; str.strip() also takes U+001C-1F, controls refused anyway), spelled
# out: ``\s`` is another set in JSON Schema's ECMA regexes (no U+0085), so a document would say something else.
SPACE_CHARS: Final = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Required text, trimmed before it is checked: no control, and one character that is not a space.
NOT_BLANK_PATTERN: Final = rf"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f{SPACE_CHARS}][^\x00-\x1f\x7f]*$"
MAX_NAME, MAX_DESCRIPTION, MAX_BRAND, MAX_SLUG, MAX_CATEGORY_PATH = 300, 20_000, 100, 100, 1_000
MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTE_VALUE = 100, 100, 1_000
# Within bigint, and exact as a JSON number (JavaScript's MAX_SAFE_INTEGER): FastAPI writes the OpenAPI
# document's bounds as floats, where 2**63 - 1 reads 2**63, a price the edge refuses.
MAX_PRICE_MINOR: Final = 2**53 - 1

# ISO 4217 active alphabetic codes: a three-letter string that is not one of these is a typo.
CURRENCIES: Final = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP
STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG
XOF XPF YER ZAR ZMW ZWG
""".split())  # noqa: SIM905 (a table of codes reads better as text)

_SKU_RE: Final = re.compile(SKU_PATTERN)
_CATEGORY_PATH_RE: Final = re.compile(CATEGORY_PATH_PATTERN)
_NO_CONTROL_RE: Final = re.compile(NO_CONTROL_PATTERN)


# -- one check per field ---------------------------------------------------------------------------


def _text(value: Any, name: str, *, max_len: int, required: bool = True, plain: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {type(value).__name__}", field=name)
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{name} must not be empty", field=name)
    if len(value) > max_len:
        raise InvalidInput(f"{name} is {len(value)} characters long; at most {max_len}", field=name)
    if plain and not _NO_CONTROL_RE.fullmatch(value):
        raise InvalidInput(f"{name} must not contain control characters", field=name)
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: refused here, not a 500 at the INSERT
        raise InvalidInput(f"{name} must not contain NUL characters", field=name)
    return value


def check_sku(value: Any, name: str = "sku") -> str:
    if not isinstance(value, str) or not _SKU_RE.fullmatch(value):
        raise InvalidInput(
            f"{name} {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field=name,
        )
    return value


def check_name(value: Any, name: str = "name") -> str:
    return _text(value, name, max_len=MAX_NAME, plain=True)


def check_description(value: Any, name: str = "description") -> str:
    return _text(value, name, max_len=MAX_DESCRIPTION, required=False)


def check_brand(value: Any, name: str = "brand") -> str:
    return _text(value, name, max_len=MAX_BRAND, plain=True)


def check_category_path(value: Any, name: str = "category") -> str:
    if not isinstance(value, str) or len(value) > MAX_CATEGORY_PATH or not _CATEGORY_PATH_RE.fullmatch(value):
        raise InvalidInput(f"{name} {value!r} must be a category path: lower-case slugs joined by '/', "
                           "e.g. audio/headphones", field=name)
    return value


def check_price_minor(value: Any, name: str = "price_minor") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer count of minor units, not {value!r}", field=name)
    if value < 0:
        raise InvalidInput(f"{name} must not be negative (got {value})", field=name)
    if value > MAX_PRICE_MINOR:
        raise InvalidInput(f"{name} {value} is out of range", field=name)
    return value


def check_currency(value: Any, name: str = "currency") -> str:
    if not isinstance(value, str) or value not in CURRENCIES:
        hint = " (codes are upper case)" if isinstance(value, str) and value.upper() in CURRENCIES else ""
        raise InvalidInput(f"{name} {value!r} is not an ISO 4217 code{hint}", field=name)
    return value


def check_attributes(value: Any, name: str = "attributes") -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{name} must be an object of string values", field=name)
    if len(value) > MAX_ATTRIBUTES:
        raise InvalidInput(f"{len(value)} {name}; at most {MAX_ATTRIBUTES}", field=name)
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_ATTRIBUTE_KEY:
            raise InvalidInput(f"attribute name {key!r} must be 1-{MAX_ATTRIBUTE_KEY} characters", field=name)
        if "\x00" in key or (isinstance(item, str) and "\x00" in item):  # jsonb cannot hold NUL
            raise InvalidInput(f"attribute {key!r} must not contain NUL characters", field=name)
        if not isinstance(item, str) or len(item) > MAX_ATTRIBUTE_VALUE:
            raise InvalidInput(f"attribute {key!r} must be a string of at most {MAX_ATTRIBUTE_VALUE} characters",
                               field=name)
    return dict(value)


def check_active(value: Any, name: str = "active") -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, not {value!r}", field=name)
    return value


# What each check allows, as JSON Schema (the edge's OpenAPI document declares it).
SKU_SCHEMA: Final = {"type": "string", "pattern": SKU_PATTERN}
NAME_SCHEMA: Final = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NOT_BLANK_PATTERN}
NO_NUL_PATTERN: Final = r"^[^\x00]*$"
DESCRIPTION_SCHEMA: Final = {"type": "string", "maxLength": MAX_DESCRIPTION, "pattern": NO_NUL_PATTERN}
BRAND_SCHEMA: Final = {"type": "string", "minLength": 1, "maxLength": MAX_BRAND, "pattern": NOT_BLANK_PATTERN}
CATEGORY_PATH_SCHEMA: Final = {"type": "string", "maxLength": MAX_CATEGORY_PATH, "pattern": CATEGORY_PATH_PATTERN,
                               "description": "A category path, e.g. audio/headphones."}
PRICE_MINOR_SCHEMA: Final = {"type": "integer", "minimum": 0, "maximum": MAX_PRICE_MINOR,
                             "description": "Integer count of the currency's minor unit (1999 with EUR = 19.99 EUR)."}
CURRENCY_SCHEMA: Final = {"type": "string", "enum": sorted(CURRENCIES), "description": "ISO 4217 code, upper case."}
ATTRIBUTES_SCHEMA: Final = {
    "type": "object", "maxProperties": MAX_ATTRIBUTES,
    # Not blank as str.strip() sees it, spelled out: JSON Schema's ECMA \S takes U+0085 and U+001C-1F for text.
    "propertyNames": {"minLength": 1, "maxLength": MAX_ATTRIBUTE_KEY,
                      "pattern": r"^[^\x00]*[^\x00\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
                                 r"[^\x00]*$"},
    "additionalProperties": {"type": "string", "maxLength": MAX_ATTRIBUTE_VALUE, "pattern": NO_NUL_PATTERN},
}
ACTIVE_SCHEMA: Final = {"type": "boolean"}


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: typing hashes Annotated metadata
class Rule:
    """A pydantic field constraint made of one of these checks: ``Annotated[str, Rule(check_name, ...)]``
    validates with the check (its message as is, under the ``catalog_rule`` error type) and declares
    ``schema`` in the JSON Schema. For request types built on the catalog's rules; ``name`` is how the
    message names the field there."""

    check: Callable[[Any, str], Any]
    name: str
    schema: Mapping[str, Any]

    def _validate(self, value: Any) -> Any:
        try:
            return self.check(value, self.name)
        except InvalidInput as exc:
            raise PydanticCustomError("catalog_rule", "{reason}", {"reason": str(exc)}) from None

    def __get_pydantic_core_schema__(self, _source: Any, _handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self._validate)

    def __get_pydantic_json_schema__(self, _schema: CoreSchema, _handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return dict(self.schema)


# -- a product as it is given, and as it is stored -------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductInput:
    """A product as a writer gives it: ``category`` is a category path such as ``audio/headphones``."""

    sku: str
    name: str
    description: str = ""
    brand: str | None = None
    category: str | None = None
    price_minor: int
    currency: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    active: bool = True


# What update_product may change: every field but the sku.
UPDATABLE: Final = frozenset(f.name for f in fields(ProductInput)) - {"sku"}


def validate_product(product: ProductInput) -> ProductInput:
    """The product with its text trimmed, or ``InvalidInput`` naming the first bad field."""
    return replace(
        product,
        sku=check_sku(product.sku),
        name=check_name(product.name),
        description=check_description(product.description),
        brand=None if product.brand is None else check_brand(product.brand),
        category=None if product.category is None else check_category_path(product.category),
        price_minor=check_price_minor(product.price_minor),
        currency=check_currency(product.currency),
        attributes=check_attributes(product.attributes),
        active=check_active(product.active),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductDetails:
    """What a product says about itself: the fields a stored product and a search hit share."""

    sku: str
    name: str
    description: str
    brand: str | None
    category: str | None
    price_minor: int
    currency: str
    attributes: dict[str, str]
    active: bool
    version: int
    updated_at: datetime
    # Ids of its images in display order (the files context; thumbnails at /v1/products/{sku}/images/...).
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Product(ProductDetails):
    """A product as the catalog stores it."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Product:
        return cls(sku=row["sku"], name=row["name"], description=row["description"], brand=row["brand"],
                   category=row["category"], price_minor=row["price_minor"], currency=row["currency"],
                   attributes=json.loads(row["attributes"]), active=row["active"], version=row["version"],
                   updated_at=row["updated_at"], images=tuple(row.get("images") or ()))

    @classmethod
    def written(cls, given: ProductInput, *, version: int, updated_at: datetime,
                images: tuple[str, ...] = ()) -> Product:
        """The product as stored from a validated input, at the version its write returned."""
        return cls(**{f.name: getattr(given, f.name) for f in fields(ProductInput)},
                   version=version, updated_at=updated_at, images=images)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "updated_at": self.updated_at.isoformat()}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Product:
        d = json.loads(text)
        return cls(**{**d, "updated_at": datetime.fromisoformat(d["updated_at"]),
                      "images": tuple(d.get("images") or ())})
