"""Image files made for the tests (never shipped): a photo with EXIF and GPS, a transparent PNG, and the
bad inputs the files context must refuse, each made by Pillow so its bytes are exactly what it claims."""

from __future__ import annotations

import io

from PIL import Image


def photo(width: int = 1600, height: int = 1200, *, orientation: int = 6, quality: int = 90) -> bytes:
    """A JPEG like a phone's: EXIF with a camera, a GPS position and an orientation (6: rotate 90°)."""
    image = Image.new("RGB", (width, height), (180, 40, 90))
    for x in range(0, width, 50):  # some detail, so the JPEG is not trivially small
        image.paste((20, 200, (x * 7) % 255), (x, 0, x + 10, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Test Camera Co"
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)  # GPSLatitude: a place the photo must not reveal
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()


def transparent_png(width: int = 300, height: int = 200) -> bytes:
    image = Image.new("RGBA", (width, height), (0, 0, 255, 0))
    image.paste((255, 0, 0, 255), (50, 50, 150, 150))
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=_text_chunk())
    return out.getvalue()


def _text_chunk():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "someone@example.test")
    return info


def text_named_like_an_image() -> bytes:
    return b"<html><body>not an image, whatever photo.jpg says</body></html>\n" * 20


def truncated_jpeg() -> bytes:
    data = photo()
    return data[: len(data) // 2]


def bomb_png(side: int = 12_000) -> bytes:
    """A few hundred KB that declare side x side pixels (144 MP at 12,000): a decompression bomb."""
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG", optimize=True)
    return out.getvalue()


def oversize_png(width: int = 13_000, height: int = 10) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, "PNG")
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (20, 20)).save(out, "GIF")
    return out.getvalue()
