"""The image agent's steps (streams/files.py) on stand-ins for the store and the catalog: what it writes and in
which order, what a refusal leaves behind (nothing), and a store that is down being waited for, not skipped."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
from image_samples import photo, text_named_like_an_image

from shopflow.catalog.images import Settled
from shopflow.files import Keys, StoreUnavailable
from shopflow.images import THUMBNAIL_SIZES
from shopflow.schemas.catalog import ProductDeleted
from shopflow.schemas.files import FileUploaded, ImageOutcome, ImageProcessed
from shopflow.settings import Settings
from shopflow.streams.files import ImageAgent, _until_done

SKU, UPLOAD = "CAM-1", "0b7c3f5e-8a41-4c1d-9b1e-3f2d6c7a8e90"


@dataclass
class MemoryStore:
    """The ObjectStore's operations on a dict; ``failures`` calls in a row raise StoreUnavailable first."""

    objects: dict[str, bytes] = field(default_factory=dict)
    failures: int = 0
    log: list[str] = field(default_factory=list)

    def _maybe_down(self, what: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable(f"{what}: connection refused")

    def read(self, key: str, max_bytes: int) -> bytes:
        self._maybe_down(f"GET {key}")
        if key not in self.objects:
            raise FileNotFoundError(key)
        return self.objects[key][: max_bytes + 1]

    def write(self, key: str, data: bytes, content_type: str) -> None:
        self._maybe_down(f"PUT {key}")
        self.objects[key] = data
        self.log.append(f"write {key}")

    def delete(self, keys: list[str]) -> None:
        self._maybe_down("DELETE")
        for key in keys:
            self.objects.pop(key, None)
            self.log.append(f"delete {key}")

    def delete_prefix(self, prefix: str) -> int:
        keys = [k for k in self.objects if k.startswith(prefix)]
        self.delete(keys)
        return len(keys)


@dataclass
class Upload:
    state: str


@dataclass
class CatalogImages:
    """ProductImages' calls the agent makes, recording each outcome settled; ``product_deleted``: settling
    finds the product gone (discard), and ``forget_product`` finds this upload."""

    state: str = "confirmed"
    product_deleted: bool = False
    settled: list[ImageProcessed] = field(default_factory=list)
    log: list[str] | None = None

    async def get(self, sku: str, upload_id: str) -> Upload:
        return Upload(self.state)

    async def settle(self, event: ImageProcessed) -> Settled:
        self.settled.append(event)
        if self.log is not None:
            self.log.append(f"settle {event.outcome}")
        return Settled(None, discard=self.product_deleted and event.outcome is ImageOutcome.READY)

    async def forget_product(self, sku: str, *, deleted_at: datetime,
                             remove_objects: Callable[[list[str]], Awaitable[None]]) -> int:
        await remove_objects([UPLOAD])
        return 1


def agent_with(store: MemoryStore, images: CatalogImages) -> ImageAgent:
    settings = Settings(_env_file=None, postgres_password="unused")  # type: ignore[call-arg]
    return ImageAgent(settings, store, codec=None, images=images, run=asyncio.run)  # type: ignore[arg-type]


def uploaded(data: bytes | None, store: MemoryStore) -> FileUploaded:
    if data is not None:
        store.objects[Keys.incoming(UPLOAD)] = data
    return FileUploaded("5d0c9d8e-0f59-4b57-a3f7-5c1e0f3f7b11", SKU, UPLOAD, Keys.incoming(UPLOAD), "image/jpeg",
                        len(data or b""), "admin-1", datetime.now(UTC))


def test_an_image_is_written_then_settled_and_only_then_its_upload_removed():
    store = MemoryStore()
    images = CatalogImages(log=store.log)
    event = uploaded(photo(1200, 900, orientation=1), store)

    outcome = agent_with(store, images).upload(event)

    assert (outcome.kind, outcome.detail) == ("ready", "1200x900")
    [settled] = images.settled
    assert (settled.outcome, settled.width, settled.height) == (ImageOutcome.READY, 1200, 900)
    assert settled.thumbnail_sizes == THUMBNAIL_SIZES
    written = [Keys.original(SKU, UPLOAD), *(Keys.thumbnail(SKU, UPLOAD, s) for s in THUMBNAIL_SIZES)]
    assert store.log == [*(f"write {k}" for k in written), "settle READY", f"delete {Keys.incoming(UPLOAD)}"]
    assert sorted(store.objects) == sorted(written)


def test_an_image_settled_after_its_product_was_deleted_keeps_no_object():
    # Given an upload whose product is deleted while the agent makes its thumbnails
    store = MemoryStore()
    images = CatalogImages(product_deleted=True)

    # When the agent settles it
    outcome = agent_with(store, images).upload(uploaded(photo(600, 400, orientation=1), store))

    # Then what it wrote goes with the upload itself
    assert outcome.kind == "discarded"
    assert store.objects == {}


def test_a_deleted_product_has_the_objects_of_its_images_removed():
    # Given a product's image and an upload of it still in the store
    store = MemoryStore()
    store.objects = {Keys.original(SKU, UPLOAD): b"o", Keys.thumbnail(SKU, UPLOAD, 160): b"t",
                     Keys.incoming(UPLOAD): b"u", Keys.original("OTHER-1", UPLOAD): b"kept"}

    # When the agent reads the product's ProductDeleted
    outcome = agent_with(store, CatalogImages()).product_deleted(
        ProductDeleted(event_id="5d0c9d8e-0f59-4b57-a3f7-5c1e0f3f7b12", sku=SKU, version=3,
                       occurred_at=datetime.now(UTC)))

    # Then every object of its images is gone, and only those
    assert (outcome.kind, outcome.detail) == ("product-deleted", "1 images")
    assert store.objects == {Keys.original("OTHER-1", UPLOAD): b"kept"}


def test_a_refused_file_is_settled_rejected_and_nothing_of_it_is_kept():
    store = MemoryStore()
    images = CatalogImages()

    outcome = agent_with(store, images).upload(uploaded(text_named_like_an_image(), store))

    assert (outcome.kind, outcome.detail) == ("rejected", "not-an-image")
    assert images.settled[0].reason == "not-an-image" and images.settled[0].thumbnail_sizes == ()
    assert store.objects == {}


def test_an_upload_gone_from_the_store_is_rejected_as_missing():
    images = CatalogImages()

    outcome = agent_with(MemoryStore(), images).upload(uploaded(None, MemoryStore()))

    assert outcome.kind == "rejected" and images.settled[0].reason == "missing"


def test_a_replayed_upload_already_settled_only_finishes_removing_its_object():
    store = MemoryStore()
    images = CatalogImages(state="ready")

    outcome = agent_with(store, images).upload(uploaded(photo(), store))

    assert outcome.kind == "skipped" and images.settled == [] and store.objects == {}


def test_a_store_that_is_down_is_waited_for_and_the_upload_is_not_lost(monkeypatch):
    monkeypatch.setattr("shopflow.streams.files.RETRY_FIRST_S", 0.01)
    store = MemoryStore()
    images = CatalogImages()
    event = uploaded(photo(600, 400, orientation=1), store)
    agent = agent_with(store, images)
    store.failures = 3  # the read fails, then the first writes of the retries

    with pytest.raises(StoreUnavailable):
        agent.upload(replace(event))
    outcome = _until_done(lambda: agent.upload(event), threading.Event())

    assert outcome is not None and outcome.kind == "ready"
    assert len(images.settled) == 1  # settled once, after the writes went through
    assert Keys.incoming(UPLOAD) not in store.objects


def test_a_stop_while_the_store_is_down_leaves_the_record_uncommitted():
    store = MemoryStore(failures=10**6)
    stop = threading.Event()
    stop.set()

    assert _until_done(lambda: agent_with(store, CatalogImages()).upload(uploaded(photo(), store)), stop) is None
