"""A product's images in the catalog: the uploads issued for them, and the image ids on the product row.

The catalog owns which images a product shows; the files context (shopflow/files.py, streams/files.py)
owns the bytes. An upload is recorded when its presigned POST is issued; its confirm writes
``FileUploaded``, the image agent's outcome ``ImageProcessed`` and a delete ``FileDeleted``, each to the
outbox (routed to the ``files`` topic) in the transaction that changes the state it announces, so no
event is lost or sent for a change that rolled back. An image that became READY is appended to the
product's ``images`` in that same transaction, which bumps the product's version and writes its
``ProductUpserted``: the search index (through Debezium and the indexer) shows it like any other product
change. Each step is idempotent: a second confirm, a replayed outcome or a second delete writes nothing.
An admin's request, confirm and delete each write their row of the audit log in that same transaction.

No object outlives its image: the sweep claims uploads never confirmed under a row lock (a confirm
waits for it, then finds the upload swept), an image settled READY for a product deleted meanwhile is
settled ``deleted`` instead (the agent removes what it wrote), and a deleted product's images are
forgotten (``forget_product``, the agent on ``ProductDeleted``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg

from shopflow import access
from shopflow.access import Principal
from shopflow.catalog.errors import Conflict, NotFound
from shopflow.catalog.products import Product
from shopflow.catalog.store import _PRODUCT_COLUMNS, Catalog
from shopflow.outbox import Outbox
from shopflow.schemas.files import FileDeleted, FileUploaded, ImageOutcome, ImageProcessed
from shopflow.topologies.catalog import FILES

# Event ids derived from what caused them: the same upload confirmed or settled twice is one event.
EVENT_NAMESPACE: Final = uuid.UUID("6f1d8a52-3c1e-4f0b-9a57-2d7e64b0c9a1")


def event_id(kind: str, upload_id: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{kind}:{upload_id}"))


def audit_target(sku: str, upload_id: str) -> str:
    return f"product:{sku}/image:{upload_id}"


_UPLOAD_COLUMNS: Final = """upload_id::text AS upload_id, sku, content_type, max_bytes, uploaded_by, state, reason,
       detail, created_at, expires_at, confirmed_at, processed_at"""


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling an outcome did: the product as written when an image joined it, and whether the
    objects the agent wrote for the upload must go (its product was deleted, or so was the image)."""

    product: Product | None
    discard: bool


@dataclass(frozen=True, slots=True)
class Upload:
    upload_id: str
    sku: str
    content_type: str
    max_bytes: int
    uploaded_by: str
    # issued, confirmed, ready, rejected, swept, deleted (shopflow/migrations/0009_product_images.sql)
    state: str
    reason: str | None
    detail: str | None
    created_at: datetime
    expires_at: datetime
    confirmed_at: datetime | None
    processed_at: datetime | None


class ProductImages:
    """Uploads and image ids of products, written beside the catalog's own product writes."""

    def __init__(self, catalog: Catalog, *, files_topic: str = FILES.name):
        self.catalog = catalog
        self.pool = catalog.pool
        self.files = Outbox(catalog.codec, FILES, route=files_topic)

    async def warm(self) -> None:
        """Register the files events' schemas now, off the event loop (see ``Catalog.warm``)."""
        now, some = datetime.now(UTC), str(uuid.uuid4())
        for event in (FileUploaded(some, "warm", some, "warm", "image/jpeg", 1, "warm", now),
                      ImageProcessed(event_id=some, sku="warm", image_id=some, outcome=ImageOutcome.REJECTED,
                                     occurred_at=now),
                      FileDeleted(some, "warm", some, "warm", now)):
            await asyncio.to_thread(self.files.encode, event)

    async def issue(self, sku: str, *, content_type: str, max_bytes: int, actor: Principal | str,
                    ttl: timedelta) -> Upload:
        """Record a new upload of an image of a live product (404 if there is none), audited."""
        uploaded_by = actor.user_id if isinstance(actor, Principal) else actor
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""INSERT INTO image_uploads (upload_id, sku, content_type, max_bytes, uploaded_by, expires_at)
                    SELECT $1, sku, $3, $4, $5, now() + $6::interval FROM products WHERE sku = $2 AND deleted_at IS NULL
                    RETURNING {_UPLOAD_COLUMNS}""",
                uuid.uuid4(), sku, content_type, max_bytes, uploaded_by, ttl)
            if row is None:
                raise NotFound(f"no product {sku}; create it before adding images", field="sku")
            upload = Upload(**dict(row))
            await access.audit(conn, actor=actor, action="image.upload", target=audit_target(sku, upload.upload_id),
                               detail={"content_type": content_type, "max_bytes": max_bytes})
        return upload

    async def get(self, sku: str, upload_id: str) -> Upload:
        row = await self.pool.fetchrow(
            f"SELECT {_UPLOAD_COLUMNS} FROM image_uploads WHERE upload_id = $1 AND sku = $2", _uuid(upload_id), sku)
        if row is None:
            raise NotFound(f"no upload {upload_id} for product {sku}", field="upload_id")
        return Upload(**dict(row))

    async def confirm(self, sku: str, upload_id: str, *, key: str, size_bytes: int,
                      actor: Principal | str) -> tuple[Upload, bool]:
        """Mark an issued upload confirmed (its object ``key`` was seen, ``size_bytes`` long), announce and
        audit it; ``(upload, True)`` the first time, ``(upload, False)`` after. An upload past its expiry,
        swept, or of a product deleted meanwhile cannot be confirmed (409 saying what to do)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_UPLOAD_COLUMNS}, expires_at < now() AS expired, NOT EXISTS (SELECT 1 FROM products p "
                "WHERE p.sku = u.sku AND p.deleted_at IS NULL) AS orphaned FROM image_uploads u "
                "WHERE upload_id = $1 AND sku = $2 FOR UPDATE OF u", _uuid(upload_id), sku)
            if row is None:
                raise NotFound(f"no upload {upload_id} for product {sku}", field="upload_id")
            upload = Upload(**{k: v for k, v in row.items() if k not in ("expired", "orphaned")})
            ensure_confirmable(upload)
            if upload.state != "issued":
                return upload, False
            if row["expired"]:
                raise Conflict(f"upload {upload_id} expired at {upload.expires_at.isoformat()}; ask for a new upload",
                               field="upload_id")
            if row["orphaned"]:
                raise Conflict(f"product {sku} was deleted after this upload was issued; create it again and ask "
                               "for a new upload", field="sku")
            confirmed = Upload(**dict(await conn.fetchrow(
                f"UPDATE image_uploads SET state = 'confirmed', confirmed_at = now() WHERE upload_id = $1 "
                f"RETURNING {_UPLOAD_COLUMNS}", _uuid(upload_id))))
            await self.files.write(conn, [(sku, FileUploaded(
                event_id("FileUploaded", upload_id), sku, upload_id, key, upload.content_type, size_bytes,
                upload.uploaded_by, confirmed.confirmed_at or datetime.now(UTC)))])
            await access.audit(conn, actor=actor, action="image.confirm", target=audit_target(sku, upload_id),
                               detail={"size_bytes": size_bytes})
        return confirmed, True

    async def settle(self, event: ImageProcessed) -> Settled:
        """Apply the image agent's outcome: the upload settles; a READY image joins its product (one
        ``ProductUpserted``). A READY image of a product deleted meanwhile is settled ``deleted``: the
        caller removes the objects it wrote (``Settled.discard``). A replay changes nothing."""
        state = "ready" if event.outcome is ImageOutcome.READY else "rejected"
        async with self.pool.acquire() as conn, conn.transaction():
            settled = await conn.fetchval(
                "UPDATE image_uploads SET state = $2, reason = $3, detail = $4, processed_at = now() "
                "WHERE upload_id = $1 AND state IN ('issued', 'confirmed') RETURNING true",
                _uuid(event.image_id), state, event.reason, event.detail)
            if not settled:
                # Settled before (a replay), or deleted meanwhile: what was written is kept only if READY.
                now = await conn.fetchval("SELECT state FROM image_uploads WHERE upload_id = $1",
                                          _uuid(event.image_id))
                return Settled(None, discard=now != "ready")
            await self.files.write(conn, [(event.sku, event)])
            if event.outcome is not ImageOutcome.READY:
                return Settled(None, discard=False)
            changed = await conn.fetchval(
                """UPDATE products SET images = array_append(images, $2), version = version + 1, updated_at = now()
                    WHERE sku = $1 AND deleted_at IS NULL AND NOT ($2 = ANY (images))
                RETURNING sku""",
                event.sku, event.image_id)
            if changed is None and not await conn.fetchval(
                    "SELECT true FROM products WHERE sku = $1 AND deleted_at IS NULL", event.sku):
                await conn.execute("UPDATE image_uploads SET state = 'deleted', reason = 'product-deleted' "
                                   "WHERE upload_id = $1", _uuid(event.image_id))
                return Settled(None, discard=True)
            return Settled(await self._announce(conn, changed), discard=False)

    async def remove(self, sku: str, image_id: str, *, actor: Principal | str) -> Product:
        """Take an image off its product (its ``ProductUpserted``, and ``FileDeleted`` for the image agent to
        remove its objects), audited; 404 when the product does not show it."""
        deleted_by = actor.user_id if isinstance(actor, Principal) else actor
        async with self.pool.acquire() as conn, conn.transaction():
            changed = await conn.fetchval(
                """UPDATE products SET images = array_remove(images, $2), version = version + 1, updated_at = now()
                    WHERE sku = $1 AND deleted_at IS NULL AND $2 = ANY (images)
                RETURNING sku""",
                sku, image_id)
            if changed is None:
                raise NotFound(f"product {sku} has no image {image_id}", field="image_id")
            await conn.execute("UPDATE image_uploads SET state = 'deleted' WHERE upload_id = $1", _uuid(image_id))
            await self.files.write(conn, [(sku, FileDeleted(event_id("FileDeleted", image_id), sku, image_id,
                                                            deleted_by, datetime.now(UTC)))])
            await access.audit(conn, actor=actor, action="image.delete", target=audit_target(sku, image_id))
            product = await self._announce(conn, changed)
        assert product is not None
        return product

    async def sweep(self, remove_objects: Callable[[list[str]], Awaitable[None]], *, older_than: timedelta,
                    limit: int = 500) -> int:
        """Mark swept the uploads issued and never confirmed whose presigned POST expired more than
        ``older_than`` ago, once ``remove_objects(upload ids)`` has removed their objects; how many.
        The rows stay locked meanwhile: a confirm of one of them waits, then finds it swept; rows a
        confirm holds are skipped. A sweep cut short by a failure rolls back and is done again."""
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [r["upload_id"] for r in await conn.fetch(
                "SELECT upload_id::text AS upload_id FROM image_uploads WHERE state = 'issued' "
                "AND expires_at < now() - $1::interval ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                older_than, limit)]
            if ids:
                await remove_objects(ids)
                await conn.execute("UPDATE image_uploads SET state = 'swept' WHERE upload_id = ANY ($1::uuid[])",
                                   [_uuid(u) for u in ids])
        return len(ids)

    async def forget_product(self, sku: str, *, deleted_at: datetime,
                             remove_objects: Callable[[list[str]], Awaitable[None]]) -> int:
        """A deleted product's images and uploads in flight (those issued before ``deleted_at``, confirmed
        or settled READY) marked deleted, once ``remove_objects(upload ids)`` has removed their objects; how
        many. Uploads still only issued are left to the sweep; a replay finds nothing left to do."""
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [r["upload_id"] for r in await conn.fetch(
                "SELECT upload_id::text AS upload_id FROM image_uploads WHERE sku = $1 AND created_at <= $2 "
                "AND state IN ('confirmed', 'ready') FOR UPDATE", sku, deleted_at)]
            if ids:
                await remove_objects(ids)
                await conn.execute("UPDATE image_uploads SET state = 'deleted', reason = 'product-deleted' "
                                   "WHERE upload_id = ANY ($1::uuid[])", [_uuid(u) for u in ids])
        return len(ids)

    async def _announce(self, conn: asyncpg.Connection, sku: str | None) -> Product | None:
        """The product as just changed in this transaction, its ProductUpserted written to the outbox."""
        if sku is None:
            return None
        row = await conn.fetchrow(f"SELECT {_PRODUCT_COLUMNS} FROM products p LEFT JOIN categories c "
                                  "ON c.id = p.category_id WHERE p.sku = $1", sku)
        product = Product.from_row(row)
        await self.catalog.outbox.write(conn, [(product.sku, self.catalog._upserted(product))])
        return product


def ensure_confirmable(upload: Upload) -> None:
    """A swept or deleted upload cannot be confirmed (409 saying what to do); any other can, or already was."""
    if upload.state in ("swept", "deleted"):
        raise Conflict(f"upload {upload.upload_id} was {upload.state}; ask for a new upload", field="upload_id")


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no upload {value!r}: an upload id is a uuid", field="upload_id") from None
