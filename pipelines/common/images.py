"""The one image decoder and encoder of every job, so training and serving see the same pixels.

`pix2pix prepare` stores, `pix2pix translate` feeds the model, and train's validation and
evaluate read back what this module decides:

    decode(bytes)      -> Picture: 8-bit RGB (or grayscale), alpha kept aside, upright
                          (EXIF orientation applied), its full size and a note; or BadImage
    split_aligned      -> the A and B halves of an aligned A|B picture, or BadImage
    encode             -> TIFF (the prepared dataset), PNG or JPEG (translate's outputs)
    decode_stored      -> the pixels of a file prepare stored

Any Pillow mode is converted with one rule: grayscale, palette and CMYK by Pillow;
16-bit images scaled by 1/257 (rounded) and float images in 0..1 by 255 (0..255 ones
kept, NaN read as 0), never clipped at 255 as Pillow's convert() does. The pixel limit
is checked from the header, before any pixel is decoded, so a decompression bomb costs
nothing; Pillow's own global limit is restored after each decode. Resizing is
`pix2pix_core.geometry.resample`, which the registered model uses too.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
# Pillow's own default (2**30 / 4 / 3), for every job: larger images are refused.
DEFAULT_MAX_PIXELS = 89_478_485
OUTPUT_FORMATS = ("png", "jpg")  # translate's; prepare stores "tiff"
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 1  # most of zlib's size gain for a fraction of its time
# Each half of an aligned image is one picture; official datasets have square halves.
# Wider than 1.8:1 either way is more likely a single photo or a strip than an A|B pair.
MAX_HALF_ASPECT = 1.8

_SIGNATURES = {
    b"\x89PNG": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"RIFF": "WebP",
}
_MODE_NAMES = {
    "1": "1-bit black and white",
    "L": "grayscale",
    "LA": "grayscale with alpha",
    "La": "grayscale with premultiplied alpha",
    "P": "palette",
    "PA": "palette with alpha",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "RGBa": "premultiplied RGBA",
    "RGBX": "RGBX",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "LAB": "Lab",
    "HSV": "HSV",
    "I": "32-bit integer (read as 16-bit)",
    "I;16": "16-bit grayscale",
    "I;16L": "16-bit grayscale",
    "I;16B": "16-bit grayscale",
    "I;16N": "16-bit grayscale",
}
_SIXTEEN_BIT = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_GRAY = ("1", "L", "LA", "La", "F", *_SIXTEEN_BIT)  # no "to grayscale" in their notes
_SAVE_ARGS = {
    "tiff": ("TIFF", {}),  # uncompressed: fast to write and to read
    "png": ("PNG", {"compress_level": PNG_COMPRESS_LEVEL}),
    "jpg": ("JPEG", {"quality": JPEG_QUALITY}),
}


class BadImage(Exception):
    """An image that cannot be used; the message is the reason a person reads."""


@dataclass(frozen=True)
class Picture:
    """A decoded image. `pixels` may be a reduced-scale decode; `size` is always the full
    size as a viewer shows it (width, height), which checks and outputs use."""

    pixels: np.ndarray  # uint8 H x W x C, C = 3 (RGB) or 1 (grayscale)
    alpha: np.ndarray | None  # uint8 H x W, kept aside; None when the image has none
    size: tuple[int, int]
    note: str  # what was converted, e.g. "converted from 16-bit grayscale"; "" if nothing


# -- decoding -----------------------------------------------------------------------------


@contextmanager
def _pillow_limit(limit: int | None) -> Iterator[None]:
    """Pillow's global pixel limit set to `limit` for the block, restored after."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def decode(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, channels: int = 3, min_side: int = 0
) -> Picture:
    """Encoded bytes -> Picture, or BadImage with the reason.

    `min_side`: a JPEG that will be shrunk to at least min_side x min_side is decoded at a
    reduced scale (DCT scaling, 1/2 to 1/8) when both its sides divide by 16 (so the
    result is exactly the full image shrunk and an A|B split stays on the seam), never
    below `min_side` on either side: the resize would discard those pixels anyway.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not data:
        raise BadImage("empty file (0 bytes)")
    with _pillow_limit(None):  # ours is checked below, from the header Pillow has read
        img = _open(data)
    width, height = img.size
    if width * height > max_pixels:
        raise BadImage(
            f"{width} x {height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (a decompression bomb?); raise --max_pixels if the image is genuine"
        )
    with _pillow_limit(max_pixels):
        try:
            if min_side and img.format == "JPEG" and width % 16 == 0 and height % 16 == 0:
                img.draft(None, (min_side, min_side))
            img.load()
            loaded = img.size
            img = _upright(img)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
            kind = img.format or "image"
            raise BadImage(f"truncated or corrupt {kind} data: {err}") from None
        pixels, alpha, note = _convert(img, channels)
    size = (width, height) if img.size == loaded else (height, width)  # turned by EXIF
    return Picture(pixels, alpha, size, note)


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        fmt = next((f for sig, f in _SIGNATURES.items() if data.startswith(sig)), None)
        if fmt:
            raise BadImage(f"corrupt {fmt} file: Pillow cannot read its header") from None
        raise BadImage(
            f"not an image: Pillow does not recognise the format (starts {data[:12]!r})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadImage(f"corrupt image: {err}") from None


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so pixels are as a viewer shows them."""
    if img.getexif().get(ExifTags.Base.Orientation, 1) in (None, 1):
        return img
    return ImageOps.exif_transpose(img)


def _convert(img: Image.Image, channels: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Any mode -> (uint8 H x W x channels, alpha or None, note)."""
    mode = img.mode
    name = _MODE_NAMES.get(mode, mode)
    alpha = None
    if mode in ("LA", "La"):
        gray_alpha = img.convert("LA")
        alpha, img = np.asarray(gray_alpha.getchannel("A")), gray_alpha.getchannel("L")
    elif mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in img.info):
        name = "palette with transparency" if mode == "P" else name
        rgba = img.convert("RGBA")
        alpha, img = np.asarray(rgba.getchannel("A")), rgba.convert("RGB")
    elif mode in _SIXTEEN_BIT:
        # Pillow's convert("L") clips at 255, which turns most 16-bit images white.
        wide = np.clip(np.asarray(img).astype(np.float64), 0, 65535)
        img = Image.fromarray(np.rint(wide / 257).astype(np.uint8), "L")
    elif mode == "F":
        img, name = _from_float(np.asarray(img, dtype=np.float64))
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)
    pixels = np.asarray(img)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    note = ""
    if mode != target:
        to_gray = channels == 1 and mode not in _GRAY
        note = f"converted from {name}" + (" to grayscale" if to_gray else "")
    return np.ascontiguousarray(pixels), alpha, note


def _from_float(values: np.ndarray) -> tuple[Image.Image, str]:
    """Floats in 0..1 scaled by 255, in 0..255 kept (as their maximum says); NaN as 0."""
    top = values[np.isfinite(values)].max(initial=0.0)
    scale = 255.0 if top <= 1.0 else 1.0
    nan = np.isnan(values)
    scaled = np.where(nan, 0.0, np.clip(values, 0.0, 255.0 / scale) * scale)
    name = "float 0-1" if scale > 1 else "float 0-255"
    name += ", NaN as 0" if nan.any() else ""
    return Image.fromarray(np.rint(scaled).astype(np.uint8), "L"), name


# -- aligned images, resizing -------------------------------------------------------------


def split_aligned(picture: Picture) -> tuple[Picture, Picture]:
    """An aligned picture -> its left (A) and right (B) halves, or BadImage when its shape
    says it is not two pictures side by side (checked on the full size)."""
    width, height = picture.size
    if width % 2:
        raise BadImage(
            f"width {width} is odd: an aligned image is A and B side by side, "
            "two halves of equal width"
        )
    half = width // 2
    if not 1 / MAX_HALF_ASPECT <= half / height <= MAX_HALF_ASPECT:
        raise BadImage(
            f"{width} x {height} is an implausible shape for an aligned A|B image "
            f"(each half would be {half} x {height}); is it a single picture?"
        )
    cut = picture.pixels.shape[1] // 2  # of a reduced-scale decode too: both sides even

    def side(columns: slice) -> Picture:
        alpha = None if picture.alpha is None else np.ascontiguousarray(picture.alpha[:, columns])
        pixels = np.ascontiguousarray(picture.pixels[:, columns])
        return Picture(pixels, alpha, (half, height), picture.note)

    return side(slice(0, cut)), side(slice(cut, None))


# -- encoding -----------------------------------------------------------------------------


def encode(pixels: np.ndarray, fmt: str, alpha: np.ndarray | None = None) -> tuple[bytes, str]:
    """uint8 H x W x C (+ alpha) -> file bytes in `fmt` (tiff | png | jpg, any case), and a
    note: the alpha is put back where the format holds one, and noted when it cannot be."""
    key = fmt.lower()
    if key not in _SAVE_ARGS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(_SAVE_ARGS)}")
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    note = ""
    if alpha is not None and key == "jpg":
        note = "alpha dropped: JPEG has none (use --format png to keep it)"
    elif alpha is not None:
        img = img.convert("LA" if img.mode == "L" else "RGBA")
        img.putalpha(Image.fromarray(alpha))
        note = "alpha kept"
    pillow_format, options = _SAVE_ARGS[key]
    buf = io.BytesIO()
    img.save(buf, format=pillow_format, **options)
    return buf.getvalue(), note


def decode_stored(data: bytes, channels: int = 3) -> np.ndarray:
    """An image prepare stored (lossless, RGB) -> uint8 H x W x `channels` (1: grayscale by
    Pillow's rule, as `decode` and the official code's Grayscale); reads any format."""
    with Image.open(io.BytesIO(data)) as img:
        if channels == 1:
            return np.asarray(img.convert("L"))[..., None]
        return np.asarray(img.convert("RGB"))
