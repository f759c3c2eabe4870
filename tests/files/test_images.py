"""What a product image may be (shopflow/images.py): checked by its bytes, cleaned of metadata, thumbnailed."""

from __future__ import annotations

import io

import pytest
from image_samples import bomb_png, gif, oversize_png, photo, text_named_like_an_image, transparent_png, truncated_jpeg
from PIL import Image

from shopflow.images import THUMBNAIL_SIZES, Limits, Refused, image_links, process, thumbnail_dimensions

LIMITS = Limits(max_bytes=5 * 2**20, max_pixels=40_000_000, max_side=12_000)


def test_a_photo_is_kept_upright_without_its_metadata_with_a_thumbnail_per_size():
    # Given a 1600x1200 JPEG whose EXIF says "rotate 90°" and carries a GPS position
    data = photo(1600, 1200, orientation=6)

    image = process(data, LIMITS)

    # Then it is stored upright (1200x1600), and nothing of its EXIF survives
    assert (image.format, image.width, image.height) == ("JPEG", 1200, 1600)
    original = Image.open(io.BytesIO(image.original))
    assert original.size == (1200, 1600)
    assert dict(original.getexif()) == {} and "exif" not in original.info and "icc_profile" not in original.info
    assert list(image.thumbnails) == sorted(THUMBNAIL_SIZES)
    for size, thumb in image.thumbnails.items():
        opened = Image.open(io.BytesIO(thumb))
        assert opened.format == "JPEG" and "exif" not in opened.info
        assert opened.size == thumbnail_dimensions(1200, 1600, size)
        assert max(opened.size) == size


def test_a_transparent_png_keeps_its_format_drops_its_text_and_gets_white_behind_its_thumbnails():
    image = process(transparent_png(300, 200), LIMITS)

    assert (image.format, image.content_type) == ("PNG", "image/png")
    assert "Author" not in Image.open(io.BytesIO(image.original)).info
    thumb = Image.open(io.BytesIO(image.thumbnails[160]))
    assert thumb.size == (160, 107)
    assert thumb.getpixel((2, 2)) == pytest.approx((255, 255, 255), abs=3)  # transparent became white, not black


def test_a_small_image_is_never_enlarged():
    assert thumbnail_dimensions(100, 50, 1024) == (100, 50)


@pytest.mark.parametrize(("make", "reason"), [
    (text_named_like_an_image, "not-an-image"),
    (truncated_jpeg, "truncated"),
    (bomb_png, "decompression-bomb"),
    (oversize_png, "oversize-dimensions"),
    (gif, "unsupported-type"),
], ids=["text-named-jpg", "truncated", "bomb", "oversize", "gif"])
def test_bad_files_are_refused_by_their_bytes_with_a_reason_and_what_to_do(make, reason):
    with pytest.raises(Refused) as refused:
        process(make(), LIMITS)

    assert refused.value.reason == reason
    assert "upload" in refused.value.detail  # says what to do next


def test_a_file_over_the_byte_limit_is_refused_before_it_is_opened():
    with pytest.raises(Refused, match="over the 1000 bytes allowed") as refused:
        process(photo(), Limits(max_bytes=1000, max_pixels=10**9, max_side=10**5))
    assert refused.value.reason == "too-large"


def test_an_images_links_name_every_thumbnail_and_the_original():
    links = image_links("SKU-1", "abc")

    assert links == {**{str(s): f"/v1/products/SKU-1/images/abc/{s}" for s in THUMBNAIL_SIZES},
                     "original": "/v1/products/SKU-1/images/abc/original"}
