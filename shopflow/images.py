"""What a product image may be, and how an upload becomes one: checked by its bytes, cleaned, thumbnailed.

The rules live here once: the formats accepted (by what the bytes are, never by the name or the declared
content type), the limits (bytes, pixels, longest side) and the thumbnail sizes; the edge imports them
to issue an upload, the image agent (streams/files.py) to process it, the catalog's routes to build URLs.

A file is refused with a ``Refused(reason, detail)`` before anything is stored. The dimensions are read
from the header before a single pixel is decoded, so a decompression bomb (a small file declaring a
huge canvas) costs nothing; a truncated file fails its full decode. What is kept is re-encoded from the
decoded pixels (EXIF orientation applied), so no EXIF, GPS, ICC or text chunk of the upload survives.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow format name -> the content type it is stored and served as.
ALLOWED_FORMATS: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
ALLOWED_CONTENT_TYPES = frozenset(ALLOWED_FORMATS.values())
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
# Longest side in pixels of each thumbnail (JPEG), smallest first.
THUMBNAIL_SIZES: tuple[int, ...] = (160, 480, 1024)
THUMBNAIL_CONTENT_TYPE = "image/jpeg"
THUMBNAIL_QUALITY = 85
ORIGINAL_JPEG_QUALITY = 92


class Refused(Exception):
    """An upload that is not an acceptable image; ``reason`` is a short code, the message says what to do."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    max_side: int


@dataclass(frozen=True)
class ProcessedImage:
    """An accepted image: its cleaned original and one JPEG per thumbnail size."""

    format: str
    width: int
    height: int
    original: bytes
    thumbnails: dict[int, bytes]

    @property
    def content_type(self) -> str:
        return ALLOWED_FORMATS[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def process(data: bytes, limits: Limits) -> ProcessedImage:
    """The image these bytes are, cleaned and thumbnailed; ``Refused`` if they are not an acceptable one."""
    image = _open(data, limits)
    try:
        image.load()
    except Exception as exc:  # OSError "image file is truncated", and whatever a damaged stream raises
        raise Refused("truncated", f"the {image.format} file is damaged or cut short ({exc}); upload the "
                                   "whole file again") from None
    fmt = str(image.format)
    upright = ImageOps.exif_transpose(image)
    # Savers copy some of ``info`` (ICC profile, EXIF) into what they write: none of it is kept.
    upright.info = {k: v for k, v in upright.info.items() if k == "transparency"}
    original = _encode(upright, fmt)
    thumbnails: dict[int, bytes] = {}
    # Largest first, each from the one before: a 12-megapixel photo is reduced once, not three times.
    source = _flatten(upright)
    for size in sorted(THUMBNAIL_SIZES, reverse=True):
        source = source.copy()
        source.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        thumbnails[size] = _jpeg(source, THUMBNAIL_QUALITY)
    return ProcessedImage(fmt, upright.width, upright.height, original, dict(sorted(thumbnails.items())))


def thumbnail_dimensions(width: int, height: int, size: int) -> tuple[int, int]:
    """The size of the thumbnail of longest side ``size`` of a width x height image (never enlarged)."""
    scale = min(1.0, size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _open(data: bytes, limits: Limits) -> Image.Image:
    if len(data) > limits.max_bytes:
        raise Refused("too-large", f"the file is over the {limits.max_bytes} bytes allowed; upload a smaller one")
    with warnings.catch_warnings():
        # The pixel limit is ours (below): Pillow's own bomb warning would fire first at its 89 MP default.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
        except UnidentifiedImageError:
            raise _not_allowed(data) from None
        except Image.DecompressionBombError:
            raise Refused("decompression-bomb", "the image declares more pixels than any product photo needs; "
                                                "upload a smaller image") from None
        except Exception as exc:  # a header the decoder chokes on (struct.error, SyntaxError, ...)
            raise Refused("truncated", f"the file looks like an image but its header is damaged ({exc}); "
                                       "upload the original file again") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise Refused("decompression-bomb", f"the image declares {width}x{height} pixels, over the "
                                            f"{limits.max_pixels} allowed; upload a smaller image")
    if max(width, height) > limits.max_side:
        raise Refused("oversize-dimensions", f"the image is {width}x{height}: a side over {limits.max_side} "
                                             "pixels; resize it and upload it again")
    return image


def _not_allowed(data: bytes) -> Refused:
    """Why bytes that are none of the allowed formats are refused: another image format, or no image."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            return Refused("unsupported-type", f"the file is a {other.format} image; upload "
                                               f"{', '.join(ALLOWED_FORMATS)} instead")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        return Refused("not-an-image", "the file's bytes are not an image, whatever its name says; upload a "
                                       f"{', '.join(ALLOWED_FORMATS)} image")


def _encode(image: Image.Image, fmt: str) -> bytes:
    """The image re-encoded from its pixels in its own format, carrying no metadata."""
    if fmt == "JPEG":
        return _jpeg(image, ORIGINAL_JPEG_QUALITY)
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, "PNG", optimize=False)
    else:
        image.save(out, "WEBP", quality=90)
    return out.getvalue()


def _flatten(image: Image.Image) -> Image.Image:
    """RGB for JPEG: a transparent background becomes white rather than black."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB") if image.mode != "RGB" else image


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    _flatten(image).save(out, "JPEG", quality=quality, optimize=False, progressive=False)
    return out.getvalue()


# Where the edge serves an image: a redirect to a short-lived presigned GET (api/routers/images.py), so a
# search hit's links never expire while the bucket stays private. ``size`` is a thumbnail size or "original".
IMAGE_ROUTE = "/v1/products/{sku}/images/{image_id}/{size}"


def image_links(sku: str, image_id: str) -> dict[str, str]:
    """The edge paths of an image's thumbnails (by size) and of its cleaned original."""
    sizes = [str(s) for s in THUMBNAIL_SIZES] + ["original"]
    return {size: IMAGE_ROUTE.format(sku=sku, image_id=image_id, size=size) for size in sizes}
