"""The product catalog: categories and products in PostgreSQL, their events through the outbox.

The catalog is the one place where ShopFlow's state lives in PostgreSQL. Every product change
and the event announcing it (``ProductUpserted`` / ``ProductDeleted``, Avro framed by the
project's codec) commit in one transaction: the event goes to the ``outbox`` table and leaves
PostgreSQL only through Debezium's Outbox Event Router, routed by ``aggregatetype`` to the topic
``catalog.products`` and keyed by sku. A product's ``version`` is incremented by the same
``UPDATE ... RETURNING`` that changes the row, so consumers can order a sku's events by it.

Bad input raises a ``CatalogError`` whose ``status`` is the HTTP status the edge answers with
(``InvalidInput`` 422, ``NotFound`` 404, ``Conflict`` 409); nothing is written in that case.

Product reads go through a Redis cache (``product:<sku>``, with a TTL) that the search indexer
invalidates when it applies an event of that sku; every cache entry carries the product version so
a slow reader can never put back an older product than the indexer has already seen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import redis
import redis.asyncio as aioredis

from shopflow.schemas import load_schema
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.records import Money, ProductDeleted, ProductUpserted
from shopflow.settings import Settings
from shopflow.topologies.catalog import CATALOG_PRODUCTS

log = logging.getLogger(__name__)

# -- errors the edge maps to 4xx -------------------------------------------------------------------


class CatalogError(Exception):
    """A catalog request that cannot be honoured; ``status`` is the HTTP status to answer with."""

    status: int = 400

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class InvalidInput(CatalogError):
    """A value is malformed or refers to something that does not exist (e.g. an unknown category)."""

    status = 422


class NotFound(CatalogError):
    status = 404


class Conflict(CatalogError):
    """The request clashes with the current state (sku taken, category still in use, ...)."""

    status = 409


# -- validation (pure, no server) ------------------------------------------------------------------

SKU_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SLUG_RE: Final = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_NAME, MAX_DESCRIPTION, MAX_BRAND = 300, 20_000, 100
MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTE_VALUE = 100, 100, 1_000
MAX_PRICE_MINOR: Final = 2**63 - 1  # bigint

# ISO 4217 active alphabetic codes: a three-letter string that is not one of these is a typo.
CURRENCIES: Final = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP
STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG
XOF XPF YER ZAR ZMW ZWG
""".split())


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductInput:
    """A product as the edge sends it: ``category`` is a category path such as ``audio/headphones``."""

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


def _text(value: Any, name: str, *, max_len: int, required: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {type(value).__name__}", field=name)
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{name} must not be empty", field=name)
    if len(value) > max_len:
        raise InvalidInput(f"{name} is {len(value)} characters long; at most {max_len}", field=name)
    return value


def validate_product(product: ProductInput) -> ProductInput:
    """The product with its text trimmed, or ``InvalidInput`` naming the first bad field."""
    if not isinstance(product.sku, str) or not SKU_RE.fullmatch(product.sku):
        raise InvalidInput(
            f"sku {product.sku!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="sku",
        )
    name = _text(product.name, "name", max_len=MAX_NAME)
    description = _text(product.description, "description", max_len=MAX_DESCRIPTION, required=False)
    brand = None if product.brand is None else _text(product.brand, "brand", max_len=MAX_BRAND) or None
    category = None
    if product.category is not None:
        category = _text(product.category, "category", max_len=1_000).strip("/")
    price = product.price_minor
    if isinstance(price, bool) or not isinstance(price, int):
        raise InvalidInput(f"price_minor must be an integer count of minor units, not {price!r}", field="price_minor")
    if price < 0:
        raise InvalidInput(f"price_minor must not be negative (got {price})", field="price_minor")
    if price > MAX_PRICE_MINOR:
        raise InvalidInput(f"price_minor {price} is out of range", field="price_minor")
    currency = product.currency
    if not isinstance(currency, str) or currency not in CURRENCIES:
        hint = " (codes are upper case)" if isinstance(currency, str) and currency.upper() in CURRENCIES else ""
        raise InvalidInput(f"currency {currency!r} is not an ISO 4217 code{hint}", field="currency")
    attributes = product.attributes
    if not isinstance(attributes, Mapping):
        raise InvalidInput("attributes must be an object of string values", field="attributes")
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidInput(f"{len(attributes)} attributes; at most {MAX_ATTRIBUTES}", field="attributes")
    for key, value in attributes.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_ATTRIBUTE_KEY:
            raise InvalidInput(f"attribute name {key!r} must be 1-{MAX_ATTRIBUTE_KEY} characters", field="attributes")
        if not isinstance(value, str) or len(value) > MAX_ATTRIBUTE_VALUE:
            raise InvalidInput(
                f"attribute {key!r} must be a string of at most {MAX_ATTRIBUTE_VALUE} characters", field="attributes"
            )
    if not isinstance(product.active, bool):
        raise InvalidInput(f"active must be true or false, not {product.active!r}", field="active")
    return replace(product, name=name, description=description, brand=brand, category=category,
                   attributes=dict(attributes))


def validate_category(slug: Any, name: Any) -> tuple[str, str]:
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug) or len(slug) > 100:
        raise InvalidInput(f"slug {slug!r} must be lower-case letters and digits in dash-separated words", field="slug")
    return slug, _text(name, "name", max_len=MAX_NAME)


# -- what the catalog returns ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
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

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Product:
        return cls(sku=row["sku"], name=row["name"], description=row["description"], brand=row["brand"],
                   category=row["category"], price_minor=row["price_minor"], currency=row["currency"],
                   attributes=json.loads(row["attributes"]), active=row["active"], version=row["version"],
                   updated_at=row["updated_at"])

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "updated_at": self.updated_at.isoformat()}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Product:
        d = json.loads(text)
        return cls(**{**d, "updated_at": datetime.fromisoformat(d["updated_at"])})


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    parent_id: int | None
    slug: str
    name: str
    path: str


# -- the Redis read cache --------------------------------------------------------------------------

PRODUCT_CACHE_TTL_S: Final = 300

# An entry is "<version>|<product json>"; a fence left by the indexer is "<version>|" (no product).
# A read-through fill only lands if nothing newer is there, so a reader that loaded version 4
# just before the indexer fenced version 5 cannot put version 4 back for a whole TTL.
_FILL_LUA: Final = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local v, mine = tonumber(string.sub(cur, 1, sep - 1)), tonumber(ARGV[1])
  if v > mine or (v == mine and sep < #cur) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"""
_FENCE_LUA: Final = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if tonumber(string.sub(cur, 1, sep - 1)) > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|', 'PX', ARGV[2])
return 1
"""


def product_cache_key(sku: str) -> str:
    return f"product:{sku}"


def invalidate_cached_products(client: redis.Redis, versions: Mapping[str, int],
                               ttl_s: float = PRODUCT_CACHE_TTL_S) -> None:
    """Fence the cache entries of these skus at the versions just applied (one round trip).

    Called by the search indexer after it applied the events; synchronous like the indexer.
    """
    if not versions:
        return
    fence = client.register_script(_FENCE_LUA)
    pipe = client.pipeline(transaction=False)
    for sku, version in versions.items():
        fence(keys=[product_cache_key(sku)], args=[version, int(ttl_s * 1000)], client=pipe)
    pipe.execute()


# -- the repository --------------------------------------------------------------------------------

_UPSERTED = ProductUpserted.AVRO_NAME
_DELETED = ProductDeleted.AVRO_NAME

_PRODUCT_COLUMNS: Final = """p.sku, p.name, p.description, p.brand, c.path AS category, p.price_minor, p.currency,
       p.attributes::text AS attributes, p.active, p.version, p.updated_at"""

# A subtree is the path itself and every path starting with 'path/'. Written as a range rather
# than LIKE $1 || '/%' so the unique btree on path (COLLATE "C") serves it also in asyncpg's
# generic prepared plans; '0' is the character right after '/'.
_IN_SUBTREE: Final = "(c.path = $1 OR (c.path >= $1 || '/' AND c.path < $1 || '0'))"
_UNSET: Final = object()  # update_category: "parent not given", as None means "make it a root"


class Catalog:
    """Catalog writes (each with its outbox event, one transaction) and cached product reads."""

    def __init__(self, pool: asyncpg.Pool, codec: AvroCodec, cache: aioredis.Redis | None = None, *,
                 topic: str = CATALOG_PRODUCTS.name, cache_ttl_s: float = PRODUCT_CACHE_TTL_S):
        self.pool = pool
        self.codec = codec
        self.cache = cache
        # The outbox's aggregatetype is the topic the Outbox Event Router sends the event to.
        self.topic = topic
        self.cache_ttl_ms = int(cache_ttl_s * 1000)
        self._fill = cache.register_script(_FILL_LUA) if cache is not None else None

    @classmethod
    async def open(cls, settings: Settings, codec: AvroCodec, *, topic: str = CATALOG_PRODUCTS.name,
                   cache: bool = True, pool_size: int = 10) -> Catalog:
        """A catalog on its own pool (and Redis client); ``close()`` releases them."""
        pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=pool_size)
        client = aioredis.Redis.from_url(settings.redis_url) if cache else None
        catalog = cls(pool, codec, client, topic=topic)
        await catalog.warm()
        return catalog

    async def close(self) -> None:
        await self.pool.close()
        if self.cache is not None:
            await self.cache.aclose()

    async def warm(self) -> None:
        """Register both event schemas now, off the event loop: the codec's first encode of a
        subject is a blocking registry call, and it should not happen inside a write transaction."""
        sample = datetime.now(UTC)
        await asyncio.to_thread(self._encode, ProductDeleted(
            event_id=str(uuid.uuid4()), sku="warm", version=1, occurred_at=sample))
        await asyncio.to_thread(self._encode, ProductUpserted(
            event_id=str(uuid.uuid4()), sku="warm", version=1, name="warm", description="",
            price=Money(0, "EUR"), active=True, occurred_at=sample))

    def _encode(self, event: ProductUpserted | ProductDeleted) -> bytes:
        return self.codec.encode(CATALOG_PRODUCTS.subject(event.AVRO_NAME), load_schema(event.AVRO_NAME),
                                 event.to_avro())

    async def _emit(self, conn: asyncpg.Connection, events: list[ProductUpserted | ProductDeleted]) -> None:
        await conn.executemany(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES ($1, $2, $3, $4, $5)",
            [(uuid.UUID(e.event_id), self.topic, e.sku, e.AVRO_NAME.rsplit(".", 1)[1], self._encode(e))
             for e in events],
        )

    @staticmethod
    def _upserted(p: Product) -> ProductUpserted:
        return ProductUpserted(
            event_id=str(uuid.uuid4()), sku=p.sku, version=p.version, name=p.name, description=p.description,
            brand=p.brand, category=p.category, price=Money(p.price_minor, p.currency),
            attributes=dict(p.attributes), active=p.active, occurred_at=p.updated_at,
        )

    @staticmethod
    async def _category_id(conn: asyncpg.Connection, path: str | None) -> int | None:
        if path is None:
            return None
        # FOR SHARE: a concurrent move of this category waits until the product row is written.
        cid = await conn.fetchval("SELECT id FROM categories WHERE path = $1 FOR SHARE", path)
        if cid is None:
            raise InvalidInput(f"unknown category {path!r}; create it first", field="category")
        return cid

    # -- products ----------------------------------------------------------------------------------

    async def create_product(self, product: ProductInput) -> Product:
        """Create a product (or bring back a deleted sku, its version continuing); 409 if it exists."""
        p = validate_product(product)
        async with self.pool.acquire() as conn, conn.transaction():
            category_id = await self._category_id(conn, p.category)
            row = await conn.fetchrow(
                """INSERT INTO products AS p (sku, name, description, brand, category_id, price_minor, currency,
                                              attributes, active)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9)
                   ON CONFLICT (sku) DO UPDATE
                      SET name = EXCLUDED.name, description = EXCLUDED.description, brand = EXCLUDED.brand,
                          category_id = EXCLUDED.category_id, price_minor = EXCLUDED.price_minor,
                          currency = EXCLUDED.currency, attributes = EXCLUDED.attributes,
                          active = EXCLUDED.active, version = p.version + 1, updated_at = now(),
                          deleted_at = NULL
                    WHERE p.deleted_at IS NOT NULL
                   RETURNING p.version, p.updated_at""",
                p.sku, p.name, p.description, p.brand, category_id, p.price_minor, p.currency,
                json.dumps(p.attributes), p.active,
            )
            if row is None:
                raise Conflict(f"product {p.sku} already exists; update it instead", field="sku")
            created = Product(**{f.name: getattr(p, f.name) for f in fields(ProductInput)},
                              version=row["version"], updated_at=row["updated_at"])
            await self._emit(conn, [self._upserted(created)])
        return created

    async def update_product(self, sku: str, changes: Mapping[str, Any]) -> Product:
        """Change some fields of a live product; a change that changes nothing emits nothing."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise InvalidInput(f"cannot update {', '.join(sorted(unknown))}; updatable: {', '.join(sorted(UPDATABLE))}",
                               field=sorted(unknown)[0])
        async with self.pool.acquire() as conn, conn.transaction():
            # Read-modify-write under the row lock, so two partial updates cannot lose each other's fields.
            row = await conn.fetchrow(
                f"SELECT {_PRODUCT_COLUMNS} FROM products p LEFT JOIN categories c ON c.id = p.category_id "
                "WHERE p.sku = $1 AND p.deleted_at IS NULL FOR UPDATE OF p",
                sku,
            )
            if row is None:
                raise NotFound(f"no product {sku}", field="sku")
            current = Product.from_row(row)
            merged = validate_product(ProductInput(
                **{**{name: getattr(current, name) for name in UPDATABLE}, **changes, "sku": sku}))
            if all(getattr(merged, name) == getattr(current, name) for name in UPDATABLE):
                return current
            category_id = await self._category_id(conn, merged.category)
            row = await conn.fetchrow(
                """UPDATE products
                      SET name = $2, description = $3, brand = $4, category_id = $5, price_minor = $6,
                          currency = $7, attributes = $8::jsonb, active = $9,
                          version = version + 1, updated_at = now()
                    WHERE sku = $1
                RETURNING version, updated_at""",
                sku, merged.name, merged.description, merged.brand, category_id, merged.price_minor,
                merged.currency, json.dumps(merged.attributes), merged.active,
            )
            updated = Product(**{f.name: getattr(merged, f.name) for f in fields(ProductInput)},
                              version=row["version"], updated_at=row["updated_at"])
            await self._emit(conn, [self._upserted(updated)])
        return updated

    async def delete_product(self, sku: str) -> int:
        """Delete a live product; returns the version its ProductDeleted carries."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE products SET deleted_at = now(), updated_at = now(), version = version + 1
                    WHERE sku = $1 AND deleted_at IS NULL
                RETURNING version, updated_at""",
                sku,
            )
            if row is None:
                raise NotFound(f"no product {sku}", field="sku")
            await self._emit(conn, [ProductDeleted(event_id=str(uuid.uuid4()), sku=sku, version=row["version"],
                                                   occurred_at=row["updated_at"])])
        return row["version"]

    async def load_product(self, sku: str) -> Product | None:
        """The live product from PostgreSQL, bypassing the cache."""
        row = await self.pool.fetchrow(
            f"SELECT {_PRODUCT_COLUMNS} FROM products p LEFT JOIN categories c ON c.id = p.category_id "
            "WHERE p.sku = $1 AND p.deleted_at IS NULL",
            sku,
        )
        return None if row is None else Product.from_row(row)

    async def get_product(self, sku: str) -> Product | None:
        """The live product, read through the Redis cache; Redis being down only costs the cache."""
        key = product_cache_key(sku)
        if self.cache is not None:
            try:
                cached = await self.cache.get(key)
            except redis.RedisError as exc:
                log.warning("product cache unavailable, reading PostgreSQL: %s", exc)
                cached = None
            if cached:
                _, _, payload = cached.decode().partition("|")
                if payload:  # an empty payload is a fence: invalidated, read PostgreSQL
                    return Product.from_json(payload)
        product = await self.load_product(sku)
        if product is not None and self._fill is not None:
            try:
                await self._fill(keys=[key], args=[product.version, product.to_json(), self.cache_ttl_ms])
            except redis.RedisError as exc:
                log.warning("product cache unavailable, not caching %s: %s", sku, exc)
        return product

    async def list_products(self, *, after: str | None = None, limit: int = 50) -> list[Product]:
        """Live products in sku order, ``limit`` from the one after ``after`` (keyset on the primary key)."""
        limit = max(1, min(limit, 500))
        rows = await self.pool.fetch(
            f"SELECT {_PRODUCT_COLUMNS} FROM products p LEFT JOIN categories c ON c.id = p.category_id "
            "WHERE p.deleted_at IS NULL AND ($1::text IS NULL OR p.sku > $1) ORDER BY p.sku LIMIT $2",
            after, limit,
        )
        return [Product.from_row(r) for r in rows]

    # -- categories --------------------------------------------------------------------------------

    async def create_category(self, slug: str, name: str, parent_id: int | None = None) -> Category:
        slug, name = validate_category(slug, name)
        async with self.pool.acquire() as conn, conn.transaction():
            path = slug
            if parent_id is not None:
                parent = await conn.fetchval("SELECT path FROM categories WHERE id = $1 FOR SHARE", parent_id)
                if parent is None:
                    raise InvalidInput(f"unknown parent category {parent_id}", field="parent_id")
                path = f"{parent}/{slug}"
            try:
                row = await conn.fetchrow(
                    "INSERT INTO categories (parent_id, slug, name, path) VALUES ($1, $2, $3, $4) RETURNING id",
                    parent_id, slug, name, path,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"category {path} already exists", field="slug") from None
        return Category(row["id"], parent_id, slug, name, path)

    async def get_category(self, category_id: int) -> Category:
        row = await self.pool.fetchrow("SELECT id, parent_id, slug, name, path FROM categories WHERE id = $1",
                                       category_id)
        if row is None:
            raise NotFound(f"no category {category_id}", field="id")
        return Category(**row)

    async def list_categories(self) -> list[Category]:
        """The whole tree, parents before children (path order)."""
        rows = await self.pool.fetch("SELECT id, parent_id, slug, name, path FROM categories ORDER BY path")
        return [Category(**r) for r in rows]

    async def update_category(self, category_id: int, *, name: str | None = None, slug: str | None = None,
                              parent_id: int | None | object = _UNSET) -> Category:
        """Rename and/or move a category. A new path (slug or parent changed) is given to the whole
        subtree, and every live product in it is re-announced with its new category path."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, parent_id, slug, name, path FROM categories WHERE id = $1 FOR UPDATE", category_id)
            if row is None:
                raise NotFound(f"no category {category_id}", field="id")
            old = Category(**row)
            new_slug, new_name = validate_category(old.slug if slug is None else slug,
                                                   old.name if name is None else name)
            new_parent = old.parent_id if parent_id is _UNSET else parent_id
            path = new_slug
            if new_parent is not None:
                parent_path = await conn.fetchval("SELECT path FROM categories WHERE id = $1 FOR SHARE", new_parent)
                if parent_path is None:
                    raise InvalidInput(f"unknown parent category {new_parent}", field="parent_id")
                if parent_path == old.path or parent_path.startswith(old.path + "/"):
                    raise InvalidInput(f"cannot move {old.path} under its own subtree ({parent_path})",
                                       field="parent_id")
                path = f"{parent_path}/{new_slug}"
            await conn.execute("UPDATE categories SET parent_id = $2, slug = $3, name = $4 WHERE id = $1",
                               category_id, new_parent, new_slug, new_name)
            if path != old.path:
                try:
                    await conn.execute(
                        f"UPDATE categories c SET path = $2 || substr(c.path, length($1) + 1) WHERE {_IN_SUBTREE}",
                        old.path, path,
                    )
                except asyncpg.UniqueViolationError:
                    raise Conflict(f"category {path} already exists", field="slug") from None
                rows = await conn.fetch(
                    f"""UPDATE products p SET version = p.version + 1, updated_at = now()
                          FROM categories c
                         WHERE p.category_id = c.id AND p.deleted_at IS NULL AND {_IN_SUBTREE}
                     RETURNING {_PRODUCT_COLUMNS}""",
                    path,
                )
                await self._emit(conn, [self._upserted(Product.from_row(r)) for r in rows])
        return Category(category_id, new_parent, new_slug, new_name, path)  # type: ignore[arg-type]

    async def delete_category(self, category_id: int) -> None:
        """Delete a category that has no subcategories and no live products (409 otherwise)."""
        async with self.pool.acquire() as conn, conn.transaction():
            path = await conn.fetchval("SELECT path FROM categories WHERE id = $1 FOR UPDATE", category_id)
            if path is None:
                raise NotFound(f"no category {category_id}", field="id")
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM categories WHERE parent_id = $1)", category_id):
                raise Conflict(f"category {path} has subcategories; delete or move them first", field="id")
            live = await conn.fetchval(
                "SELECT count(*) FROM products WHERE category_id = $1 AND deleted_at IS NULL", category_id)
            if live:
                raise Conflict(f"category {path} still has {live} product(s); move or delete them first", field="id")
            # Deleted products keep their rows (for their versions) but need not keep the category.
            await conn.execute("UPDATE products SET category_id = NULL WHERE category_id = $1", category_id)
            await conn.execute("DELETE FROM categories WHERE id = $1", category_id)
