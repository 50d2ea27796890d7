"""A zoo of image files that batch jobs must survive.

`bad_files()`: inputs no job can use; each must end as a recorded failure with a reason.
`odd_files()`: usable images in unusual modes; each must be converted to RGB, with a note,
and to the same pixels by every job.

Everything is made in memory from small images, so it is fast and needs no fixtures.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _photo(width: int = 64, height: int = 32) -> np.ndarray:
    """A small smooth RGB image (gradients), so encoders produce realistic streams."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1
    ).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid, tiny PNG whose header claims width x height pixels.

    Pillow reads only the header at open and refuses it there (DecompressionBombError),
    so nothing big is ever allocated. The data is one compressed row of zeros.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * (1 + 3 * min(width, 64)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png_bad_crc() -> bytes:
    """A PNG whose IHDR checksum is wrong: corrupt at the header, unreadable."""
    data = bytearray(_encode(Image.fromarray(_photo()), "PNG"))
    # signature (8) + IHDR length (4) + "IHDR" (4) + 13 data bytes, then the 4 CRC bytes
    data[29] ^= 0xFF
    return bytes(data)


def _png_garbage_body() -> bytes:
    """The PNG signature followed by random bytes."""
    rng = np.random.default_rng(0)
    return b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes()


def _jpeg_truncated() -> bytes:
    """A JPEG cut short: the header parses, the pixel data ends early."""
    data = _encode(Image.fromarray(_photo(128, 64)), "JPEG", quality=90)
    return data[: len(data) * 3 // 4]


def bad_files() -> dict[str, bytes]:
    """filename -> bytes of inputs that cannot be used, one per kind of failure."""
    return {
        # an empty object, e.g. an interrupted upload
        "zero_byte.jpg": b"",
        # a JPEG whose second half is missing
        "truncated.jpg": _jpeg_truncated(),
        # a PNG with a wrong header checksum
        "bad_crc.png": _png_bad_crc(),
        # a PNG signature followed by garbage
        "garbage.png": _png_garbage_body(),
        # a text file with an image extension
        "notes.jpg": b"this is not an image, it is a note someone saved as .jpg\n",
        # a decompression bomb: a few hundred bytes claiming 30000 x 30000 pixels
        "bomb.png": _png_bomb(),
    }


def _cmyk_jpeg() -> bytes:
    return _encode(Image.fromarray(_photo()).convert("CMYK"), "JPEG", quality=90)


def _gray16_png() -> bytes:
    """16-bit grayscale: Pillow opens it as mode I;16 (values up to 65535). A ramp over the
    whole range with 2,048 levels, most of them between two 8-bit ones."""
    y, x = np.mgrid[0:32, 0:64]
    ramp = ((x * 32 + y) * 65535 // (64 * 32 - 1)).astype(np.uint16)
    return _encode(Image.fromarray(ramp), "PNG")


def _float_tiff(scale: float) -> bytes:
    """32-bit float grayscale (mode F), the ramp in 0..scale, one pixel NaN."""
    ramp = _photo()[..., 0].astype(np.float32) * np.float32(scale / 255)
    ramp[5, 40] = np.nan
    return _encode(Image.fromarray(ramp, "F"), "TIFF")


def odd_files() -> dict[str, bytes]:
    """filename -> bytes of usable images in modes other than 8-bit RGB (64 x 32 each)."""
    photo = Image.fromarray(_photo())
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    return {
        # 8-bit grayscale (mode L)
        "gray.png": _encode(photo.convert("L"), "PNG"),
        # palette image (mode P), as GIF-style PNGs are
        "palette.png": _encode(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        # RGB with a half-transparent alpha channel (mode RGBA)
        "rgba.png": _encode(rgba, "PNG"),
        # a print-workflow JPEG in CMYK
        "cmyk.jpg": _cmyk_jpeg(),
        # 16-bit grayscale PNG (mode I;16), as scientific and depth images often are
        "gray16.png": _gray16_png(),
        # 32-bit float TIFFs (mode F), as HDR and scientific pipelines write them:
        # values in 0..1, and values in 0..255
        "float01.tif": _float_tiff(1.0),
        "float255.tif": _float_tiff(255.0),
    }
