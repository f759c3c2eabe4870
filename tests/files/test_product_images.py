"""Product images end to end over the real stack: an admin's presigned upload straight to the object store,
the confirm, the image agent's thumbnails, the product's search hit carrying them, presigned GETs that work
and expire, deletion of every object; and every bad input refused clearly with nothing half stored."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from files_pipeline import MAX_BYTES, Shop
from image_samples import bomb_png, oversize_png, photo, text_named_like_an_image, truncated_jpeg
from PIL import Image
from polling import eventually, eventually_async

from shopflow.files import Keys
from shopflow.images import THUMBNAIL_SIZES, thumbnail_dimensions

pytestmark = pytest.mark.integration
SEARCHABLE_S = 90.0  # confirm -> Debezium -> agent -> outbox -> Debezium -> indexer -> search


async def confirm(shop: Shop, sku: str, upload_id: str) -> httpx.Response:
    return await shop.client.post(f"/v1/admin/products/{sku}/images/{upload_id}/confirm",
                                  headers={**shop.admin.auth, **shop.idem()})


async def settled(shop: Shop, sku: str, upload_id: str) -> dict:
    """The upload's state once the image agent has settled it (ready or rejected)."""

    async def check() -> dict:
        r = await shop.client.get(f"/v1/admin/products/{sku}/images/{upload_id}", headers=shop.admin.auth)
        assert r.status_code == 200, r.text
        assert r.json()["state"] in ("ready", "rejected"), r.json()
        return r.json()

    return await eventually_async(check, timeout_s=SEARCHABLE_S, give_up=shop.give_up, what="the upload settled")


async def search_hit(shop: Shop, sku: str, images: int) -> dict:
    async def check() -> dict:
        r = await shop.client.get("/v1/search", params={"q": sku})
        assert r.status_code == 200, r.text
        found = [h for h in r.json()["hits"] if h["sku"] == sku]
        assert len(found) == 1 and len(found[0]["images"]) == images, found
        return found[0]

    return await eventually_async(check, timeout_s=SEARCHABLE_S, give_up=shop.give_up,
                                  what=f"{sku}'s search hit with {images} images")


async def ready_image(shop: Shop, new_product, upload) -> tuple[str, dict]:
    """A new product with one image the agent made ready: its sku and the issued upload."""
    sku = await new_product()
    issued, _ = await upload(sku, photo(800, 600, orientation=1))
    await confirm(shop, sku, issued["upload_id"])
    assert (await settled(shop, sku, issued["upload_id"]))["state"] == "ready"
    return sku, issued


async def test_an_uploaded_photo_becomes_thumbnails_in_the_products_search_hit(shop: Shop, new_product, upload, store):
    # Given a product, and a 2000x1500 phone photo (EXIF rotated, with a GPS position) sent to the store
    sku = await new_product()
    issued, stored = await upload(sku, photo(2000, 1500, orientation=6))
    assert stored.status_code == 204, stored.text

    # When the admin confirms it
    confirmed = await confirm(shop, sku, issued["upload_id"])
    assert confirmed.status_code == 202, confirmed.text
    assert confirmed.json()["state"] == "confirmed"

    # Then the agent makes it an image, and the product's search hit carries its links
    state = await settled(shop, sku, issued["upload_id"])
    assert state["state"] == "ready", state
    hit = await search_hit(shop, sku, images=1)
    [image] = hit["images"]
    assert image["id"] == issued["upload_id"]
    assert set(image["links"]) == {*map(str, THUMBNAIL_SIZES), "original"}
    print("search hit:", hit)  # the closing note's example

    # And each link redirects to a presigned GET of a thumbnail of the right size, upright, without EXIF
    for size in THUMBNAIL_SIZES:
        redirect = await shop.client.get(image["links"][str(size)])
        assert redirect.status_code == 307, redirect.text
        got = httpx.get(redirect.headers["location"], timeout=10)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        thumb = Image.open(io.BytesIO(got.content))
        assert thumb.size == thumbnail_dimensions(1500, 2000, size)
        assert "exif" not in thumb.info
    original = Image.open(io.BytesIO(httpx.get((await shop.client.get(image["links"]["original"])).headers[
        "location"], timeout=10).content))
    assert original.size == (1500, 2000) and dict(original.getexif()) == {}
    # And the upload object is gone: only the image's own objects are kept
    assert store.head(Keys.incoming(issued["upload_id"])) is None


async def test_a_presigned_get_expires_and_a_tampered_one_is_refused(shop: Shop, store):
    store.write("test/expiring.txt", b"for a moment", "text/plain")
    try:
        url = store.presign_download("test/expiring.txt", ttl_s=1)
        assert httpx.get(url, timeout=5).status_code == 200
        assert httpx.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=5).status_code == 403
        assert httpx.get(url.replace("test/expiring.txt", "test/other.txt"), timeout=5).status_code == 403
        expired = eventually(lambda: (r := httpx.get(url, timeout=5)).status_code == 403 and r, timeout_s=10,
                             what="the presigned GET expired")
        assert "expired" in expired.text
    finally:
        store.delete(["test/expiring.txt"])


@pytest.mark.parametrize(("make", "reason"), [
    (text_named_like_an_image, "not-an-image"),
    (truncated_jpeg, "truncated"),
    (bomb_png, "decompression-bomb"),
    (oversize_png, "oversize-dimensions"),
], ids=["text-named-jpg", "truncated", "bomb", "oversize"])
async def test_a_bad_file_is_rejected_with_its_reason_and_nothing_is_kept(shop: Shop, new_product, upload, store,
                                                                          make, reason):
    sku = await new_product()
    content_type = "image/png" if reason in ("decompression-bomb", "oversize-dimensions") else "image/jpeg"
    issued, stored = await upload(sku, make(), content_type)
    assert stored.status_code == 204, stored.text  # the store takes any bytes of the declared type: the agent judges

    assert (await confirm(shop, sku, issued["upload_id"])).status_code == 202
    state = await settled(shop, sku, issued["upload_id"])

    assert (state["state"], state["reason"]) == ("rejected", reason), state
    assert "upload" in state["detail"]  # says what to do
    assert list(store.keys(f"images/{sku}/")) == []
    assert store.head(Keys.incoming(issued["upload_id"])) is None
    product = await shop.client.get(f"/v1/products/{sku}")
    assert product.json()["images"] == []


async def test_the_store_refuses_what_the_presigned_post_does_not_allow(shop: Shop, new_product, upload, store):
    sku = await new_product()
    # Over the size limit, another content type, another key, a tampered policy: each refused by the store
    cases = {
        "over the limit": ({}, b"x" * (MAX_BYTES + 1), "image/jpeg", 400, "EntityTooLarge"),
        "another type": ({"Content-Type": "text/html"}, photo(), "text/html", 403, "Policy Condition failed"),
        "another key": ({"key": "images/someone-else/1/original"}, photo(), "image/jpeg", 403, "Policy Condition"),
        "tampered": ({"x-amz-signature": "0" * 64}, photo(), "image/jpeg", 403, "SignatureDoesNotMatch"),
    }
    for what, (fields, data, content_type, status, says) in cases.items():
        issued, answer = await upload(sku, data, "image/jpeg", fields=fields | {"Content-Type": content_type})
        assert (answer.status_code, says in answer.text) == (status, True), (what, answer.text)
        # Nothing reached the store, and confirming it says what to do
        assert store.head(Keys.incoming(issued["upload_id"])) is None, what
        refused = await confirm(shop, sku, issued["upload_id"])
        assert refused.status_code == 409 and "POST the file" in refused.json()["detail"], (what, refused.text)
    assert list(store.keys(f"images/{sku}/")) == []


async def test_an_expired_upload_is_refused_by_the_store(shop: Shop, store):
    from shopflow.files import ObjectStore

    key = f"expired-{uuid.uuid4()}"
    short = ObjectStore(shop.settings.model_copy(update={"upload_url_ttl_s": 1}), client=store.client)
    post = short.presign_upload(Keys.incoming(key), "image/jpeg", MAX_BYTES)
    # Once its expiry has passed (the store's clock is this machine's), the policy is refused
    eventually(lambda: time.time() * 1000 > post.expires_at_ms + 1000, timeout_s=10, what="the policy's expiry")

    answer = httpx.post(post.url, data=post.fields, files={"file": ("p.jpg", photo(), "image/jpeg")}, timeout=10)

    assert answer.status_code == 403 and "Policy expired" in answer.text, answer.text
    assert store.head(Keys.incoming(key)) is None


async def test_a_customer_cannot_upload_delete_or_confirm(shop: Shop, new_product):
    sku = await new_product()
    issue = await shop.client.post(f"/v1/admin/products/{sku}/images", headers={**shop.customer.auth, **shop.idem()},
                                   json={"content_type": "image/jpeg"})
    assert issue.status_code == 403 and "permission" in issue.json()["detail"]
    anonymous = await shop.client.post(f"/v1/admin/products/{sku}/images", headers=shop.idem(),
                                       json={"content_type": "image/jpeg"})
    assert anonymous.status_code == 401
    some = "00000000-0000-4000-8000-000000000000"
    for method, path in (("POST", f"/v1/admin/products/{sku}/images/{some}/confirm"),
                         ("DELETE", f"/v1/admin/products/{sku}/images/{some}")):
        r = await shop.client.request(method, path, headers={**shop.customer.auth, **shop.idem()})
        assert r.status_code == 403, (method, r.text)


async def test_bad_requests_get_a_clear_4xx(shop: Shop, new_product):
    sku = await new_product()
    auth = {**shop.admin.auth}
    wrong_type = await shop.client.post(f"/v1/admin/products/{sku}/images", headers={**auth, **shop.idem()},
                                        json={"content_type": "image/gif"})
    assert wrong_type.status_code == 422 and "image/jpeg" in wrong_type.json()["detail"]
    no_product = await shop.client.post("/v1/admin/products/NOPE-404/images", headers={**auth, **shop.idem()},
                                        json={"content_type": "image/jpeg"})
    assert no_product.status_code == 404 and "create it" in no_product.json()["detail"]
    no_upload = await confirm(shop, sku, "00000000-0000-4000-8000-000000000000")
    assert no_upload.status_code == 404
    no_image = await shop.client.get(f"/v1/products/{sku}/images/00000000-0000-4000-8000-000000000000/160")
    assert no_image.status_code == 404


async def test_deleting_an_image_removes_it_from_the_product_and_every_object(shop: Shop, new_product, upload, store):
    # Given a product with a ready image
    sku, issued = await ready_image(shop, new_product, upload)
    prefix = Keys.image_prefix(sku, issued["upload_id"])
    assert len(list(store.keys(prefix))) == len(THUMBNAIL_SIZES) + 1

    # When the admin deletes it
    deleted = await shop.client.delete(f"/v1/admin/products/{sku}/images/{issued['upload_id']}",
                                       headers={**shop.admin.auth, **shop.idem()})
    assert deleted.status_code == 202, deleted.text

    # Then the product shows no image at once, search follows, and its objects are removed
    assert (await shop.client.get(f"/v1/products/{sku}")).json()["images"] == []
    await search_hit(shop, sku, images=0)
    eventually(lambda: list(store.keys(prefix)) == [], timeout_s=SEARCHABLE_S, give_up=shop.give_up,
               what="the image's objects removed")
    again = await shop.client.delete(f"/v1/admin/products/{sku}/images/{issued['upload_id']}",
                                     headers={**shop.admin.auth, **shop.idem()})
    assert again.status_code == 404


async def test_uploads_never_confirmed_are_swept(shop: Shop, new_product, upload, store):
    from shopflow.streams.files import sweep

    sku = await new_product()
    issued, stored = await upload(sku, photo(400, 300))
    assert stored.status_code == 204
    images = shop.app.state.files.images
    # As if its presigned POST had expired an hour ago
    await images.pool.execute("UPDATE image_uploads SET expires_at = now() - interval '1 hour' "
                              "WHERE upload_id = $1", uuid.UUID(issued["upload_id"]))

    swept = await sweep(store, images, older_than=timedelta(minutes=30))

    assert swept >= 1
    assert store.head(Keys.incoming(issued["upload_id"])) is None
    state = await shop.client.get(f"/v1/admin/products/{sku}/images/{issued['upload_id']}", headers=shop.admin.auth)
    assert state.json()["state"] == "swept"
    late = await confirm(shop, sku, issued["upload_id"])
    assert late.status_code == 409 and "ask for a new upload" in late.json()["detail"]


async def test_the_store_down_fails_a_confirm_clearly(shop: Shop, new_product, upload):
    import socket

    from shopflow.files import ObjectStore

    sku = await new_product()
    issued, _ = await upload(sku, photo(400, 300))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    files = shop.app.state.files
    real = files.store
    down_settings = shop.settings.model_copy(update={"object_store_port": dead_port})
    files.store = await asyncio.to_thread(ObjectStore, down_settings)
    try:
        down = await confirm(shop, sku, issued["upload_id"])
    finally:
        files.store = real
    assert down.status_code == 503 and "object store is not answering" in down.json()["detail"]
    assert down.headers["Retry-After"]
    # Once it answers again, the same upload confirms
    assert (await confirm(shop, sku, issued["upload_id"])).status_code == 202


async def test_each_admin_image_action_is_audited_with_the_admin(shop: Shop, new_product, upload):
    # Given an admin's upload, confirmed, made an image, then deleted
    sku, issued = await ready_image(shop, new_product, upload)
    deleted = await shop.client.delete(f"/v1/admin/products/{sku}/images/{issued['upload_id']}",
                                       headers={**shop.admin.auth, **shop.idem()})
    assert deleted.status_code == 202, deleted.text

    # Then the audit log has one row per action, naming the admin
    rows = await shop.app.state.files.images.pool.fetch(
        "SELECT actor_id::text AS actor_id, action FROM audit_log WHERE target = $1 ORDER BY id",
        f"product:{sku}/image:{issued['upload_id']}")
    assert [(r["actor_id"], r["action"]) for r in rows] == [
        (shop.admin.user_id, "image.upload"), (shop.admin.user_id, "image.confirm"),
        (shop.admin.user_id, "image.delete")]


async def test_deleting_a_product_removes_the_objects_of_its_images(shop: Shop, new_product, upload, store):
    # Given a product with a ready image
    sku, issued = await ready_image(shop, new_product, upload)
    prefix = Keys.image_prefix(sku, issued["upload_id"])
    assert list(store.keys(prefix))

    # When the admin deletes the product
    gone = await shop.client.delete(f"/v1/products/{sku}", headers={**shop.admin.auth, **shop.idem()})
    assert gone.status_code in (200, 204), gone.text

    # Then the image agent removes every object of its images, and then marks the upload deleted, saying why
    async def marked() -> tuple[str, str | None]:
        state = await shop.app.state.files.images.get(sku, issued["upload_id"])
        assert state.state == "deleted", state.state
        return state.state, state.reason

    assert await eventually_async(marked, timeout_s=SEARCHABLE_S, give_up=shop.give_up,
                                  what="the deleted product's upload marked deleted") == ("deleted", "product-deleted")
    assert list(store.keys(prefix)) == []  # removed before the mark (a replay of the mark removes nothing)
