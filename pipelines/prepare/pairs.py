"""One input -> one prepared pair, or a reason it cannot be used. Runs inside Ray tasks.

Decoding, mode conversion, the A|B split and the resize are `pipelines.common.images`'s,
the same as translate's, so a model is served the pixels it was trained on. Each side is
resized to load_size x load_size and encoded losslessly. For colorization
(`--dataset_mode colorization`) an input is one RGB picture, stored as both sides: training
and evaluation take its lightness and colour after their own resize and jitter, as the
official colorization dataset does (pix2pix_core.color).

Encoding is most of the cost, and PNG's is the dearest: images are stored as uncompressed
TIFF and the Parquet column is compressed with LZ4 instead (docs/design.md#tiff-in-parquet,
measured in benchmarks/bench_prepare.py).
"""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipelines.common.dataset import PAIR_SCHEMA
from pipelines.common.fetch import read_many, read_problem
from pipelines.common.images import BadImage, Picture, decode, encode, split_aligned
from pipelines.common.storage import Location
from pix2pix_core.geometry import min_decoded_side, resample, resized_size

IMAGE_FORMAT = "TIFF"  # uncompressed: the Parquet column is compressed instead
HELD_OUT_MAX_SIDE = 1024  # longer sides of val and test images are scaled down to this
PARQUET_COMPRESSION = "lz4"

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


class BadInput(BadImage):
    """An input that cannot be used; the message is the reason a person reads.

    `side` is "B" when the B file of a separate pair is the one at fault.
    """

    def __init__(self, reason: str, side: str = "A") -> None:
        super().__init__(reason)
        self.side = side


def held_out_max_side(load_size: int) -> int:
    """The longest side a val or test image keeps: `HELD_OUT_MAX_SIDE`, or twice load_size."""
    return max(HELD_OUT_MAX_SIDE, 2 * load_size)


def held_out_size(width: int, height: int, load_size: int) -> tuple[int, int]:
    """Val and test keep their source size, so that evaluation resamples each image once,
    from the source to the model's size; only longer sides than `held_out_max_side` are
    scaled down, the aspect kept."""
    scale = min(1.0, held_out_max_side(load_size) / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _stored(picture: Picture, load_size: int, preprocess: str, held_out: bool) -> bytes:
    """Train images resized as `--preprocess` says (before the crop, which training does);
    held-out ones at their source size."""
    size = picture.pixels.shape[1::-1]
    if held_out:
        width, height = held_out_size(*size, load_size)
    else:
        width, height = resized_size(*size, preprocess=preprocess, load_size=load_size)
    return encode(resample(picture.pixels, height, width), IMAGE_FORMAT)[0]


def stored_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a stored image, from its header."""
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def _note(picture: Picture) -> str:
    return picture.note + (" (alpha dropped)" if picture.alpha is not None else "")


# -- one input --------------------------------------------------------------------------


def prepare_aligned(
    data: bytes,
    *,
    load_size: int,
    direction: str,
    max_pixels: int,
    preprocess: str = "resize_and_crop",
    held_out: bool = False,
) -> tuple[bytes, bytes, str]:
    """An A|B image -> (a, b, note), `a` being the model's input for `direction`; resized as
    `preprocess` says, or (`held_out`: val and test) at the source size."""
    try:
        # Each half keeps at least min_decoded_side: the whole may be decoded down to twice.
        min_side = 0 if held_out else 2 * min_decoded_side(preprocess, load_size)
        picture = decode(data, max_pixels=max_pixels, min_side=min_side)
        left, right = split_aligned(picture)
    except BadImage as err:
        raise BadInput(str(err)) from None
    if direction == "BtoA":
        left, right = right, left
    stored = [_stored(half, load_size, preprocess, held_out) for half in (left, right)]
    return stored[0], stored[1], _note(picture)


def prepare_colorization(
    data: bytes,
    *,
    load_size: int,
    max_pixels: int,
    preprocess: str = "resize_and_crop",
    held_out: bool = False,
) -> tuple[bytes, bytes, str]:
    """An RGB picture -> (a, b, note), both the whole picture, resized as `prepare_aligned`."""
    try:
        min_side = 0 if held_out else min_decoded_side(preprocess, load_size)
        picture = decode(data, max_pixels=max_pixels, min_side=min_side)
    except BadImage as err:
        raise BadInput(str(err)) from None
    stored = _stored(picture, load_size, preprocess, held_out)
    return stored, stored, _note(picture)


def prepare_pair(
    data_a: bytes,
    data_b: bytes,
    *,
    load_size: int,
    direction: str,
    max_pixels: int,
    preprocess: str = "resize_and_crop",
    held_out: bool = False,
) -> tuple[bytes, bytes, str]:
    """Separate A and B images -> (a, b, note), as `prepare_aligned`. Both sides must have
    the same size."""
    sides, notes = {}, []
    for name, data in (("A", data_a), ("B", data_b)):
        try:
            min_side = 0 if held_out else min_decoded_side(preprocess, load_size)
            sides[name] = decode(data, max_pixels=max_pixels, min_side=min_side)
        except BadImage as err:
            raise BadInput(f"{name}: {err}", side=name) from None
        if note := _note(sides[name]):
            notes.append(f"{name} {note}")
    a, b = sides["A"], sides["B"]
    if a.size != b.size:  # full sizes: one side may be a reduced-scale decode
        raise BadInput(
            f"A is {a.size[0]} x {a.size[1]} but B is {b.size[0]} x {b.size[1]}; "
            "a pair must have the same size"
        )
    if direction == "BtoA":
        a, b = b, a
    stored = [_stored(side, load_size, preprocess, held_out) for side in (a, b)]
    return stored[0], stored[1], "; ".join(notes)


# -- one Ray Data batch -----------------------------------------------------------------


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
    preprocess: str = "resize_and_crop",
    dataset_mode: str = "aligned",
) -> pa.Table:
    """Prepare every input of `work`, write the good pairs as one shard per split, and
    return one RESULT_SCHEMA row per input (a reason where it could not be used).
    `dataset_mode` colorization: each input is one picture (the rows of an aligned listing)."""
    dst = Location(dst_url, dst_options)
    rows = work.to_pylist()
    urls = [r["a_url"] for r in rows] + [r["b_url"] for r in rows if r["b_url"]]
    data = read_many(urls, src_options)
    by_split: dict[str, list[dict]] = {}
    results = []
    for row in rows:
        reason, note, url = None, "", row["a_url"]
        try:
            settings = {"load_size": load_size, "max_pixels": max_pixels, "preprocess": preprocess}
            if dataset_mode == "colorization":
                a, b, note = prepare_colorization(
                    _bytes(data, row["a_url"]), held_out=row["split"] != "train", **settings
                )
            else:
                a, b, note = _prepare_row(row, data, direction=direction, **settings)
            width, height = stored_size(a)
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
                    "width": width,
                    "height": height,
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


def _prepare_row(row: dict, data: dict, **settings: object) -> tuple[bytes, bytes, str]:
    kwargs = {**settings, "held_out": row["split"] != "train"}
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
        raise BadInput(read_problem(value))
    return value
