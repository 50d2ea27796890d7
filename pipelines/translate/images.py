"""Image bytes <-> arrays for `pix2pix translate`, tolerant of what real archives hold.

Decoding turns any Pillow mode into 8-bit RGB (or grayscale for 1-channel models), keeps
an alpha channel aside so it can be put back on the output, applies the EXIF orientation,
and refuses what cannot be used with a reason a person reads: empty, truncated or corrupt
files, non-images, and images over the pixel limit (checked from the header, before any
pixel is decoded, so a decompression bomb costs nothing).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.common.image_formats import sniff_format

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
FORMATS = {"png": "PNG", "jpg": "JPEG"}
JPEG_QUALITY = 95

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_ORIENTATION = 0x0112  # EXIF tag: how the camera was held


class BadImage(Exception):
    """An input that cannot be translated; the message is the reason."""


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray  # uint8 H x W x C (C = 3, or 1 for grayscale models)
    alpha: np.ndarray | None  # uint8 H x W, kept aside for the output
    note: str  # what was converted, for the manifest; empty when nothing was


def _to_8bit(img: Image.Image) -> tuple[Image.Image, str]:
    """16-bit and float images scaled (not clipped) to 8-bit grayscale."""
    arr = np.asarray(img)
    if img.mode in _SIXTEEN_BIT:
        # Pillow's own convert("L") clips at 255, which turns most 16-bit images white.
        scaled = np.clip(arr.astype(np.float64), 0, 65535) / 257.0
        note = "16-bit grayscale scaled to 8-bit"
    else:  # "F": floats, either 0..1 or 0..255
        arr = np.nan_to_num(arr.astype(np.float64))
        scaled = arr * 255.0 if arr.max(initial=0.0) <= 1.0 else arr
        note = "float image scaled to 8-bit"
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L"), note


def _split_alpha(img: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    if img.mode in _WITH_ALPHA or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        return rgba.convert("RGB"), np.asarray(rgba.getchannel("A"))
    return img, None


def decode(data: bytes, *, max_pixels: int, channels: int = 3, side: str = "full") -> Decoded:
    """Encoded bytes -> `Decoded`, or BadImage with the reason.

    `side` picks the left (A) or right (B) half of an aligned A|B image, or all of it.
    """
    if not data:
        raise BadImage("empty file (0 bytes)")
    # Our limit replaces Pillow's (checked below from the header, before decoding).
    Image.MAX_IMAGE_PIXELS = None
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            raise BadImage(
                f"{width}x{height} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,} (--max_pixels)"
            )
        img.load()
        if img.getexif().get(_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
    except BadImage:
        raise
    except UnidentifiedImageError:
        kind = sniff_format(data)
        if kind:
            raise BadImage(f"corrupt {kind}: the header cannot be read") from None
        raise BadImage("not an image (no decoder recognises the contents)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadImage(f"corrupt or truncated image: {err}") from None

    notes = []
    original_mode = img.mode
    img, alpha = _split_alpha(img)
    if alpha is not None:
        notes.append(f"{original_mode}: alpha kept aside and reattached")
    if img.mode in _SIXTEEN_BIT or img.mode == "F":
        img, note = _to_8bit(img)
        notes.append(note)
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        notes.append(f"{img.mode} converted to {target}")
        img = img.convert(target)
    pixels = np.asarray(img)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    pixels, alpha = _pick_side(pixels, alpha, side)
    return Decoded(np.ascontiguousarray(pixels), alpha, "; ".join(dict.fromkeys(notes)))


def _pick_side(
    pixels: np.ndarray, alpha: np.ndarray | None, side: str
) -> tuple[np.ndarray, np.ndarray | None]:
    if side == "full":
        return pixels, alpha
    width = pixels.shape[1]
    if width < 2:
        raise BadImage(f"--input_side {side}: image is {width} pixel wide, not an A|B pair")
    half = width // 2
    cut = slice(0, half) if side == "A" else slice(half, 2 * half)
    return pixels[:, cut], None if alpha is None else alpha[:, cut]


def encode(pixels: np.ndarray, alpha: np.ndarray | None, fmt: str) -> tuple[bytes, str]:
    """uint8 H x W x C (+ alpha) -> file bytes in `fmt` (png | jpg), and a note."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    note = ""
    if alpha is not None:
        if fmt == "png":
            img = img.convert("LA" if img.mode == "L" else "RGBA")
            img.putalpha(Image.fromarray(alpha))
        else:
            note = "alpha dropped: JPEG has none (use --format png to keep it)"
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        # Level 1: most of the size gain of zlib for a fraction of its time.
        img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), note
