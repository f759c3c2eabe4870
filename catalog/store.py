"""The catalog repository: categories and products in PostgreSQL, each change with its outbox event.

Every product change and the event announcing it (``ProductUpserted`` / ``ProductDeleted``) commit in
one transaction through the outbox (``shopflow.outbox``), routed to ``catalog.products`` and
keyed by sku. A product's ``version`` is incremented by the same ``UPDATE ... RETURNING`` that changes
the row, so consumers can order a sku's events by it.

Bad input raises a ``CatalogError`` whose ``status`` is the HTTP status the edge answers with
(``InvalidInput`` 422, ``NotFound`` 404, ``Conflict`` 409); nothing is written in that case.
Product reads go through the versioned Redis cache (``shopflow.catalog.cache``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import redis.asyncio as aioredis

from shopflow.catalog.cache import PRODUCT_CACHE_TTL_S, ProductCache
from shopflow.catalog.categories import Category, validate_category
from shopflow.catalog.errors import Conflict, InvalidInput, NotFound
from shopflow.catalog.products import UPDATABLE, Product, ProductInput, validate_product
from shopflow.db import create_pool
from shopflow.outbox import Outbox
from shopflow.schemas.catalog import ProductDeleted, ProductUpserted
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.records import Money
from shopflow.settings import Settings
from shopflow.topologies.catalog import CATALOG_PRODUCTS

_PRODUCT_COLUMNS: Final = """p.sku, p.name, p.description, p.brand, c.path AS category, p.price_minor, p.currency,
       p.attributes::text AS attributes, p.active, p.version, p.updated_at, p.images"""

# A subtree is the path itself and every path starting with 'path/'. Written as a range rather
# than LIKE $1 || '/%' so the unique btree on path (COLLATE "C") serves it also in asyncpg's
# generic prepared plans; '0' is the character right after '/'.
_IN_SUBTREE: Final = "(c.path = $1 OR (c.path >= $1 || '/' AND c.path < $1 || '0'))"
_UNSET: Final = object()  # update_category: "parent not given", as None means "make it a root"


# The catalog lives in the schema whose outbox Debezium captures (connectors/catalog-outbox.json:
# table.include.list public.outbox), whatever settings.postgres_schema says: a product written
# anywhere else would never leave PostgreSQL. Tests' throwaway schemas therefore do not apply to it.
CATALOG_SCHEMA: Final = "public"


async def catalog_pool(settings: Settings, size: int) -> asyncpg.Pool:
    """A pool of the catalog's own: in ``CATALOG_SCHEMA``, its jsonb sent and read as text."""
    return await create_pool(settings, min_size=1, max_size=size, schema=CATALOG_SCHEMA,
                             application_name="shopflow-catalog", decode_json=False)


class Catalog:
    """Catalog writes (each with its outbox event, one transaction) and cached product reads."""

    def __init__(self, pool: asyncpg.Pool, codec: AvroCodec, cache: aioredis.Redis | None = None, *,
                 topic: str = CATALOG_PRODUCTS.name, cache_ttl_s: float = PRODUCT_CACHE_TTL_S):
        self.pool = pool
        self.codec = codec
        # The outbox's aggregatetype is the topic the Outbox Event Router sends the event to.
        self.topic = topic
        self.outbox = Outbox(codec, CATALOG_PRODUCTS, route=topic)
        self.cache = ProductCache(cache, cache_ttl_s) if cache is not None else None

    @classmethod
    async def open(cls, settings: Settings, codec: AvroCodec, *, topic: str = CATALOG_PRODUCTS.name,
                   cache: bool = True, pool_size: int = 10) -> Catalog:
        """A catalog on its own pool (and Redis client); ``close()`` releases them."""
        pool = await catalog_pool(settings, pool_size)
        client = aioredis.Redis.from_url(settings.redis_url) if cache else None
        catalog = cls(pool, codec, client, topic=topic)
        await catalog.warm()
        return catalog

    async def close(self) -> None:
        await self.pool.close()
        if self.cache is not None:
            await self.cache.client.aclose()

    async def warm(self) -> None:
        """Register both event schemas now, off the event loop: the codec's first encode of a
        subject is a blocking registry call, and it should not happen inside a write transaction."""
        sample = datetime.now(UTC)
        await asyncio.to_thread(self.outbox.encode, ProductDeleted(
            event_id=str(uuid.uuid4()), sku="warm", version=1, occurred_at=sample))
        await asyncio.to_thread(self.outbox.encode, ProductUpserted(
            event_id=str(uuid.uuid4()), sku="warm", version=1, name="warm", description="",
            price=Money(0, "EUR"), active=True, occurred_at=sample))

    async def _emit(self, conn: asyncpg.Connection, events: list[ProductUpserted | ProductDeleted]) -> None:
        await self.outbox.write(conn, [(e.sku, e) for e in events])

    async def fence_cache(self, sku: str, version: int) -> None:
        """Invalidate the sku's cached product up to ``version`` now (the indexer does it when the
        event arrives): a writer's next read then never returns what was cached before its write."""
        if self.cache is not None:
            await self.cache.fence(sku, version)

    @staticmethod
    def _upserted(p: Product) -> ProductUpserted:
        return ProductUpserted(
            event_id=str(uuid.uuid4()), sku=p.sku, version=p.version, name=p.name, description=p.description,
            brand=p.brand, category=p.category, price=Money(p.price_minor, p.currency),
            attributes=dict(p.attributes), active=p.active, images=tuple(p.images), occurred_at=p.updated_at,
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
                          deleted_at = NULL, images = '{}'
                    WHERE p.deleted_at IS NOT NULL
                   RETURNING p.version, p.updated_at""",
                p.sku, p.name, p.description, p.brand, category_id, p.price_minor, p.currency,
                json.dumps(p.attributes), p.active,
            )
            if row is None:
                raise Conflict(f"product {p.sku} already exists; update it instead", field="sku")
            created = Product.written(p, version=row["version"], updated_at=row["updated_at"])
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
            updated = Product.written(merged, version=row["version"], updated_at=row["updated_at"],
                                      images=current.images)
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
        if self.cache is not None:
            cached = await self.cache.get(sku)
            if cached is not None:
                return cached
        product = await self.load_product(sku)
        if product is not None and self.cache is not None:
            await self.cache.fill(product)
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

    async def ensure_category_path(self, path: str) -> Category:
        """The category at ``path`` (e.g. ``audio/headphones``), created with its missing ancestors, each
        named after its slug; for seeding (the demo). Existing categories are left as they are."""
        existing = {c.path: c for c in await self.list_categories()}
        slugs = path.split("/")
        category: Category | None = None
        for depth, slug in enumerate(slugs, 1):
            here = "/".join(slugs[:depth])
            if here not in existing:
                existing[here] = await self.create_category(slug, slug.replace("-", " ").capitalize(),
                                                            None if category is None else category.id)
            category = existing[here]
        if category is None:
            raise InvalidInput(f"category path {path!r} is empty", field="category")
        return category

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
