"""One input -> one prepared pair, or a reason it cannot be used. Runs inside Ray tasks.

Decode with Pillow (EXIF orientation applied), convert any mode to 8-bit RGB with a note,
split an aligned A|B image, resize each side to load_size x load_size (bicubic, as the
official code), and encode losslessly.

Encoding is most of the cost: Pillow's PNG encoder always runs its per-row filter search
(4-5 ms of CPU per 286 px image even at compress_level=0, 25-47 ms at the default level),
while the decode and both resizes take about 6 ms a pair. So images are stored as
uncompressed TIFF (0.3-0.6 ms to encode, under 1 ms to decode, any image library reads
it) and the Parquet
column is compressed with LZ4 instead (half the size, about 0.1 ms per image more than no
compression; zstd level 1 saves another 12% for 0.6 ms more). Measured in
benchmarks/bench_prepare.py; the README has the numbers.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from pipelines.common.dataset import PAIR_SCHEMA
from pipelines.common.image_formats import sniff_format
from pipelines.common.storage import Location

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
IMAGE_FORMAT = "TIFF"  # uncompressed: the Parquet column is compressed instead
PARQUET_COMPRESSION = "lz4"
# Each half of an aligned image is one picture; official datasets have square halves.
# Wider than 1.8:1 either way is more likely a single photo or a strip than an A|B pair.
MAX_HALF_ASPECT = 1.8
DEFAULT_MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485

# What each of the work table's rows says (built by prepare_sources, read here).
WORK_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("split", pa.string()),
        ("a_url", pa.string()),  # aligned: the A|B file
        ("b_url", pa.string()),  # aligned: null
    ]
)
# One row per input, back from the tasks: the driver counts these and writes quarantine.
RESULT_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("split", pa.string()),
        ("url", pa.string()),  # the input (aligned file, or A's URL of a pair)
        ("reason", pa.string()),  # null when the pair is ready
        ("note", pa.string()),
    ]
)

_MODE_NAMES = {
    "1": "1-bit black and white",
    "L": "grayscale",
    "LA": "grayscale with alpha (alpha dropped)",
    "P": "palette",
    "PA": "palette with alpha (alpha dropped)",
    "RGBA": "RGBA (alpha dropped)",
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
    "F": "32-bit float (clipped to 0-255)",
}


class BadInput(Exception):
    """An input that cannot be used; the message is the reason a person reads.

    `side` is "B" when the B file of a separate pair is the one at fault.
    """

    def __init__(self, reason: str, side: str = "A") -> None:
        super().__init__(reason)
        self.side = side


# -- decoding ---------------------------------------------------------------------------


@contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Let Pillow open images up to `max_pixels` (we refuse bigger ones ourselves)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max(max_pixels, DEFAULT_MAX_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _unidentified(data: bytes) -> BadInput:
    fmt = sniff_format(data)
    if fmt:
        return BadInput(f"corrupt {fmt} file: Pillow cannot read its header")
    return BadInput(f"not an image: Pillow does not recognise the format (starts {data[:12]!r})")


def open_image(
    data: bytes, *, max_pixels: int, min_side: int = 0
) -> tuple[Image.Image, tuple[int, int]]:
    """Bytes -> (loaded upright Pillow image, its full size as shown), or BadInput.

    `min_side`: JPEGs much larger than this are decoded at a reduced scale (DCT scaling,
    1/2 to 1/8), never below `min_side` on either side: the resize would discard those
    pixels anyway. Only when both sides divide by 16, so the scaled image is exactly the
    full one shrunk and an A|B split stays on the seam; checks use the full size.
    """
    if not data:
        raise BadInput("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise BadInput(_too_many_pixels(data, max_pixels)) from None
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadInput(f"corrupt image: {err}") from None
    width, height = img.size
    if width * height > max_pixels:
        raise BadInput(_too_many_pixels(data, max_pixels, img.size))
    if min_side and img.format == "JPEG" and width % 16 == 0 and height % 16 == 0:
        img.draft(None, (min_side, min_side))
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadInput(f"truncated or corrupt {img.format or 'image'} data: {err}") from None
    return _upright(img, (width, height))


def _too_many_pixels(data: bytes, limit: int, size: tuple[int, int] | None = None) -> str:
    if size is None and data.startswith(b"\x89PNG") and len(data) >= 24:
        size = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    claimed = f"{size[0]} x {size[1]} = {size[0] * size[1]:,} pixels" if size else "too many pixels"
    return (
        f"{claimed}, over the limit of {limit:,} (a decompression bomb?); "
        "raise --max_pixels if the image is genuine"
    )


def _upright(img: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """Apply the EXIF orientation, so pixels are as a viewer shows them."""
    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in (None, 1):
        return img, size
    turned = orientation in (5, 6, 7, 8)  # these swap width and height
    return ImageOps.exif_transpose(img), (size[::-1] if turned else size)


def to_rgb(img: Image.Image) -> tuple[Image.Image, str]:
    """8-bit RGB, and a note naming the conversion ("" when it was RGB already)."""
    mode = img.mode
    if mode == "RGB":
        return img, ""
    note = f"converted from {_MODE_NAMES.get(mode, mode)}"
    if mode.startswith("I"):
        # Pillow's convert() clips 16-bit values at 255; scale the range instead.
        wide = np.asarray(img).astype(np.int64)
        gray = (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB"), note
    if mode == "F":
        gray = np.clip(np.asarray(img), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB"), note
    return img.convert("RGB"), note


def split_aligned(img: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """An aligned image -> its left (A) and right (B) halves. `size`: its full size (`img`
    may be a reduced-scale decode of it)."""
    width, height = size
    if width % 2:
        raise BadInput(
            f"width {width} is odd: an aligned image is A and B side by side, "
            "two halves of equal width"
        )
    half = width // 2
    if not 1 / MAX_HALF_ASPECT <= half / height <= MAX_HALF_ASPECT:
        raise BadInput(
            f"{width} x {height} is an implausible shape for an aligned A|B image "
            f"(each half would be {half} x {height}); is it a single picture?"
        )
    w, h = img.size
    return img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))


def encode_image(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=IMAGE_FORMAT)
    return buf.getvalue()


def _resize(img: Image.Image, load_size: int) -> Image.Image:
    if img.size == (load_size, load_size):
        return img
    return img.resize((load_size, load_size), Image.Resampling.BICUBIC)


# -- one input --------------------------------------------------------------------------


def prepare_aligned(
    data: bytes, *, load_size: int, direction: str, max_pixels: int
) -> tuple[bytes, bytes, str]:
    """An A|B image -> (a, b, note), `a` being the model's input for `direction`."""
    img, size = open_image(data, max_pixels=max_pixels, min_side=2 * load_size)
    img, note = to_rgb(img)
    left, right = split_aligned(img, size)
    if direction == "BtoA":
        left, right = right, left
    return encode_image(_resize(left, load_size)), encode_image(_resize(right, load_size)), note


def prepare_pair(
    data_a: bytes, data_b: bytes, *, load_size: int, direction: str, max_pixels: int
) -> tuple[bytes, bytes, str]:
    """Separate A and B images -> (a, b, note). Both sides must have the same size."""
    sides, sizes, notes = {}, {}, []
    for name, data in (("A", data_a), ("B", data_b)):
        try:
            img, sizes[name] = open_image(data, max_pixels=max_pixels, min_side=load_size)
        except BadInput as err:
            raise BadInput(f"{name}: {err}", side=name) from None
        sides[name], note = to_rgb(img)
        if note:
            notes.append(f"{name} {note}")
    size_a, size_b = sizes["A"], sizes["B"]  # full sizes: one side may be a scaled decode
    if size_a != size_b:
        raise BadInput(
            f"A is {size_a[0]} x {size_a[1]} but B is {size_b[0]} x {size_b[1]}; "
            "a pair must have the same size"
        )
    a, b = sides["A"], sides["B"]
    if direction == "BtoA":
        a, b = b, a
    return (
        encode_image(_resize(a, load_size)),
        encode_image(_resize(b, load_size)),
        "; ".join(notes),
    )


# -- one Ray Data batch -----------------------------------------------------------------


def _describe_read_error(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return "not found (was it deleted after listing, or is the URL wrong?)"
    if isinstance(err, PermissionError):
        return f"no permission to read it ({err})"
    return f"could not read it: {type(err).__name__}: {err}"


def read_all(urls: list[str], options: dict) -> dict[str, bytes | BaseException]:
    """url -> bytes, or the exception that reading it raised (never raises itself)."""

    def read(url: str) -> bytes | BaseException:
        loc = Location.parse(url, options)
        try:
            return loc.fs.cat_file(loc.path)
        except Exception as err:
            return err

    unique = sorted(set(urls))
    if all("://" not in u or u.startswith("file://") for u in unique):
        return {u: read(u) for u in unique}
    # Object stores: latency, not bandwidth, bounds one request; overlap them.
    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(unique, pool.map(read, unique), strict=True))


def shard_name(keys: list[str]) -> str:
    """A file name fixed by the rows it holds, so a retried task overwrites, not adds."""
    digest = hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:20]
    return f"part-{digest}.parquet"


def write_shard(rows: list[dict], dst: Location, split: str) -> None:
    table = pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)
    dst.join(split).makedirs()
    loc = dst.join(split, shard_name([r["key"] for r in rows]))
    pq.write_table(
        table,
        loc.path,
        filesystem=dst.arrow_fs,
        compression=PARQUET_COMPRESSION,
    )


def process_batch(
    work: pa.Table,
    *,
    dst_url: str,
    dst_options: dict,
    src_options: dict,
    load_size: int,
    direction: str,
    max_pixels: int,
) -> pa.Table:
    """Prepare every input of `work`, write the good pairs as one shard per split, and
    return one RESULT_SCHEMA row per input (a reason where it could not be used)."""
    dst = Location(dst_url, dst_options)
    rows = work.to_pylist()
    urls = [r["a_url"] for r in rows] + [r["b_url"] for r in rows if r["b_url"]]
    data = read_all(urls, src_options)
    by_split: dict[str, list[dict]] = {}
    results = []
    with pixel_limit(max_pixels):
        for row in rows:
            reason, note, url = None, "", row["a_url"]
            try:
                a, b, note = _prepare_row(row, data, load_size, direction, max_pixels)
            except BadInput as err:
                reason = str(err)
                url = row["b_url"] if err.side == "B" else url
            except Exception as err:  # a decoder bug must not end the job: record it
                reason = f"could not decode: {type(err).__name__}: {err}"
            else:
                by_split.setdefault(row["split"], []).append(
                    {
                        "key": row["key"],
                        "split": row["split"],
                        "a": a,
                        "b": b,
                        "width": load_size,
                        "height": load_size,
                        "a_url": row["a_url"],
                        "b_url": row["b_url"] or row["a_url"],
                        "note": note,
                    }
                )
            results.append(
                {
                    "key": row["key"],
                    "split": row["split"],
                    "url": url,
                    "reason": reason,
                    "note": note,
                }
            )
    for split, split_rows in by_split.items():
        write_shard(split_rows, dst, split)
    return pa.Table.from_pylist(results, schema=RESULT_SCHEMA)


def _prepare_row(
    row: dict, data: dict, load_size: int, direction: str, max_pixels: int
) -> tuple[bytes, bytes, str]:
    kwargs = {"load_size": load_size, "direction": direction, "max_pixels": max_pixels}
    if row["b_url"] is None:
        return prepare_aligned(_bytes(data, row["a_url"]), **kwargs)
    try:
        data_a = _bytes(data, row["a_url"])
    except BadInput as err:
        raise BadInput(f"A: {err}") from None
    try:
        data_b = _bytes(data, row["b_url"])
    except BadInput as err:
        raise BadInput(f"B: {err}", side="B") from None
    return prepare_pair(data_a, data_b, **kwargs)


def _bytes(data: dict, url: str) -> bytes:
    value = data[url]
    if isinstance(value, BaseException):
        raise BadInput(_describe_read_error(value))
    return value
