"""Product images: admins upload straight to the object store through presigned POSTs; anyone reads them
through short-lived presigned GETs.

1. ``POST /v1/admin/products/{sku}/images`` (admin) issues an upload: a presigned POST for one object key,
   the declared content type and at most ``image_max_bytes``, valid ``upload_url_ttl_s``; the store itself
   refuses anything else (a bigger file, another type or key, a tampered or expired policy).
2. The client POSTs the file to the store, then ``POST .../images/{upload_id}/confirm``: the edge checks the
   object with a HEAD and the catalog records ``FileUploaded`` through its outbox (202).
3. The image agent (streams/files.py) checks the bytes and writes the image and its thumbnails, or refuses
   it; ``GET .../images/{upload_id}`` says which (``ready``, ``rejected`` with the reason).
4. ``DELETE .../images/{upload_id}`` takes the image off the product; the agent removes its objects.

``GET /v1/products/{sku}/images/{image_id}/{size}`` (public, as the product is) redirects to a presigned GET
of ``download_url_ttl_s``; search hits and products carry these paths, which never expire themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from shopflow import access
from shopflow.access import Principal
from shopflow.api.dependencies import AdminUser, CatalogDep, EdgeDep, IdempotencyKey, unauthorized
from shopflow.api.errors import errors
from shopflow.api.routers.catalog import command, refused
from shopflow.api.schemas import _In
from shopflow.api.security import Claims
from shopflow.catalog import CatalogError
from shopflow.catalog.images import ProductImages, Upload, ensure_confirmable
from shopflow.catalog.products import SKU_PATTERN
from shopflow.files import Keys, ObjectStore, StoreUnavailable
from shopflow.images import ALLOWED_CONTENT_TYPES, IMAGE_ROUTE, THUMBNAIL_SIZES, image_links

router = APIRouter(tags=["images"])

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="The product's sku.")]
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
UploadIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="The upload's id (also the image's).")]
SizePath = Annotated[str, Path(pattern=r"^(original|[0-9]{1,5})$",
                               description=f"A thumbnail size ({', '.join(map(str, THUMBNAIL_SIZES))}) or 'original'.")]
_WRITE_ERRORS = errors(400, 401, 403, 404, 409, 413, 422, 429, 503)


class Files:
    """The edge's object store client and image repository, made on first use and kept on the app until its
    lifespan opens a new catalog (a restarted lifespan closes the old one's pool)."""

    def __init__(self, store: ObjectStore, images: ProductImages):
        self.store, self.images = store, images

    @staticmethod
    async def of(request: Request, edge: EdgeDep, catalog: CatalogDep) -> Files:
        files: Files | None = getattr(request.app.state, "files", None)
        if files is None or files.images.catalog is not catalog:
            store = await asyncio.to_thread(ObjectStore, edge.settings)
            images = ProductImages(catalog, files_topic=edge.topics.files.name)
            await images.warm()
            files = request.app.state.files = Files(store, images)
        return files


FilesDep = Annotated[Files, Depends(Files.of)]


class ImageUploadRequest(_In):
    content_type: str = Field(description=f"One of {', '.join(sorted(ALLOWED_CONTENT_TYPES))}; the store "
                                          "accepts the file only with this Content-Type.")


class PresignedPost(BaseModel):
    url: str = Field(description="POST a multipart/form-data body here: these fields first, the file last.")
    fields: dict[str, str]


class ImageUploadIssued(BaseModel):
    upload_id: str
    upload: PresignedPost
    max_bytes: int
    expires_at: datetime
    confirm: str = Field(description="POST here once the store has answered 204.")
    state: str = Field(description="GET here to follow the upload: confirmed, then ready or rejected.")


class ImageUploadState(BaseModel):
    upload_id: str
    sku: str
    state: str = Field(description="issued, confirmed, ready, rejected, swept or deleted.")
    reason: str | None = Field(description="Why it was rejected (not-an-image, truncated, decompression-bomb, ...).")
    detail: str | None
    image: dict[str, str] | None = Field(description="When ready: its links by size, as products show them.")


async def _principal(edge: EdgeDep, admin: Claims) -> Principal:
    """The admin as the audit log names them (their e-mail), read from the accounts' database."""
    async with edge.pool.acquire() as conn:
        principal = await access.principal_of(conn, admin.user_id)
    if principal is None:
        raise unauthorized("the account of this token no longer exists")
    return principal


def _upload_path(sku: str, upload_id: str) -> str:
    return f"/v1/admin/products/{sku}/images/{upload_id}"


def _state(upload: Upload) -> ImageUploadState:
    return ImageUploadState(upload_id=upload.upload_id, sku=upload.sku, state=upload.state, reason=upload.reason,
                            detail=upload.detail,
                            image=image_links(upload.sku, upload.upload_id) if upload.state == "ready" else None)


def _store_down(exc: StoreUnavailable) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                         f"the object store is not answering ({exc}); retry shortly", {"Retry-After": "5"})


@router.post("/v1/admin/products/{sku}/images", status_code=status.HTTP_201_CREATED,
             response_model=ImageUploadIssued, responses=_WRITE_ERRORS)
async def issue_upload(sku: SkuPath, body: ImageUploadRequest, request: Request, admin: AdminUser, edge: EdgeDep,
                       files: FilesDep, idempotency_key: IdempotencyKey) -> Response:
    """A presigned POST for one image of this product, limited to the declared type and the size allowed."""
    if body.content_type not in ALLOWED_CONTENT_TYPES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"content_type {body.content_type!r} is not accepted; send one of "
                            f"{', '.join(sorted(ALLOWED_CONTENT_TYPES))}")
    settings = edge.settings

    async def run() -> Response:
        upload = await files.images.issue(sku, content_type=body.content_type, max_bytes=settings.image_max_bytes,
                                          actor=await _principal(edge, admin),
                                          ttl=timedelta(seconds=settings.upload_url_ttl_s))
        post = files.store.presign_upload(Keys.incoming(upload.upload_id), body.content_type, upload.max_bytes)
        issued = ImageUploadIssued(
            upload_id=upload.upload_id, upload=PresignedPost(url=post.url, fields=post.fields),
            max_bytes=upload.max_bytes, expires_at=datetime.fromtimestamp(post.expires_at_ms / 1000, UTC),
            confirm=_upload_path(sku, upload.upload_id) + "/confirm", state=_upload_path(sku, upload.upload_id))
        return JSONResponse(issued.model_dump(mode="json"), status.HTTP_201_CREATED)

    return await command(edge, admin.user_id, idempotency_key, request, body.model_dump(mode="json"), run)


@router.post("/v1/admin/products/{sku}/images/{upload_id}/confirm", status_code=status.HTTP_202_ACCEPTED,
             response_model=ImageUploadState, responses=_WRITE_ERRORS)
async def confirm_upload(sku: SkuPath, upload_id: UploadIdPath, request: Request, admin: AdminUser, edge: EdgeDep,
                         files: FilesDep, idempotency_key: IdempotencyKey) -> Response:
    """The file is in the store: check it (HEAD) and hand it to the image agent (FileUploaded)."""

    async def run() -> Response:
        upload = await files.images.get(sku, upload_id)
        ensure_confirmable(upload)
        key = Keys.incoming(upload_id)
        if upload.state == "issued":
            try:
                stored = await asyncio.to_thread(files.store.head, key)
            except StoreUnavailable as exc:
                raise _store_down(exc) from None
            if stored is None:
                raise HTTPException(status.HTTP_409_CONFLICT,
                                    f"nothing was uploaded for {upload_id} yet: POST the file to the upload URL "
                                    "(the store answers 204), then confirm")
            upload, _ = await files.images.confirm(sku, upload_id, key=key, size_bytes=stored.size,
                                                   actor=await _principal(edge, admin))
        return JSONResponse(_state(upload).model_dump(mode="json"), status.HTTP_202_ACCEPTED)

    return await command(edge, admin.user_id, idempotency_key, request, None, run)


@router.get("/v1/admin/products/{sku}/images/{upload_id}", response_model=ImageUploadState,
            responses=errors(401, 403, 404, 422, 429, 503))
async def upload_state(sku: SkuPath, upload_id: UploadIdPath, _admin: AdminUser,
                       files: FilesDep) -> ImageUploadState:
    """Where an upload stands: waiting for its confirm, being processed, ready, or rejected and why."""
    return _state(await _refusing(files.images.get(sku, upload_id)))


@router.delete("/v1/admin/products/{sku}/images/{upload_id}", status_code=status.HTTP_202_ACCEPTED,
               response_model=ImageUploadState, responses=_WRITE_ERRORS)
async def delete_image(sku: SkuPath, upload_id: UploadIdPath, request: Request, admin: AdminUser, edge: EdgeDep,
                       catalog: CatalogDep, files: FilesDep, idempotency_key: IdempotencyKey) -> Response:
    """Take the image (the upload's id is the image's) off the product now; its original and thumbnails are
    removed from the store next."""

    async def run() -> Response:
        product = await files.images.remove(sku, upload_id, actor=await _principal(edge, admin))
        await catalog.fence_cache(sku, product.version)
        upload = await files.images.get(sku, upload_id)
        return JSONResponse(_state(upload).model_dump(mode="json"), status.HTTP_202_ACCEPTED)

    return await command(edge, admin.user_id, idempotency_key, request, None, run)


_REDIRECT: dict[int | str, dict[str, Any]] = {307: {
    "description": "To a presigned GET of the object, valid `download_url_ttl_s` (minutes).",
    "headers": {"Location": {"description": "The presigned URL.", "schema": {"type": "string"}}}}}


@router.get(IMAGE_ROUTE, status_code=status.HTTP_307_TEMPORARY_REDIRECT, response_class=RedirectResponse,
            responses={**_REDIRECT, **errors(404, 422, 503)})
async def image(sku: SkuPath, image_id: UploadIdPath, size: SizePath, catalog: CatalogDep,
                files: FilesDep) -> Response:
    """A redirect to a presigned GET of the image (a thumbnail size or the original), valid a few minutes."""
    product = await catalog.get_product(sku)
    if product is None or image_id not in product.images:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"product {sku} has no image {image_id}")
    if size == "original":
        key = Keys.original(sku, image_id)
    elif int(size) in THUMBNAIL_SIZES:
        key = Keys.thumbnail(sku, image_id, int(size))
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no size {size}: thumbnails are "
                                                       f"{', '.join(map(str, THUMBNAIL_SIZES))} or 'original'")
    url = files.store.presign_download(key)
    return RedirectResponse(url, status.HTTP_307_TEMPORARY_REDIRECT)


async def _refusing(pending: Awaitable[Upload]) -> Upload:
    try:
        return await pending
    except CatalogError as exc:
        refused(exc)
