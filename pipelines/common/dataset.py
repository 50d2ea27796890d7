"""The prepared dataset: what `pix2pix prepare` writes and every later step reads.

    DST/
      dataset.json          schema version, counts per split, sizes, direction, source,
                            fingerprint of the inputs (see `DatasetInfo`)
      quarantine.parquet    one row per unusable input: url, reason
      train/*.parquet       one row per pair, columns `PAIR_SCHEMA`
      val/*.parquet
      test/*.parquet        (only if the source has a test split)

Images are stored losslessly encoded (uncompressed TIFF; the Parquet column is LZ4
compressed) at `load_size`; `images.decode_stored` reads any format Pillow reads. The random
crop to `crop_size` and the flip happen at training time, anew each epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.common.errors import UserError
from pipelines.common.images import decode_stored
from pipelines.common.storage import Location

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
INFO_FILE = "dataset.json"
QUARANTINE_FILE = "quarantine.parquet"

PAIR_SCHEMA = pa.schema(
    [
        ("key", pa.string()),  # relative path without extension, unique in the dataset
        ("split", pa.string()),
        ("a", pa.binary()),  # input image, lossless (TIFF), RGB, load_size x load_size
        ("b", pa.binary()),  # target image, same encoding and size
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("a_url", pa.string()),  # where A came from (for aligned sources: the A|B file)
        ("b_url", pa.string()),
        ("note", pa.string()),  # e.g. "A converted from grayscale"; empty when none
    ]
)

QUARANTINE_SCHEMA = pa.schema([("url", pa.string()), ("reason", pa.string())])


def split_location(dst: Location, split: str) -> Location:
    return dst.join(split)


def read_info(dst: Location) -> dict[str, Any]:
    """`dataset.json` of a prepared dataset, or a UserError saying how to make one."""
    info_loc = dst.join(INFO_FILE)
    if not info_loc.exists():
        raise UserError(
            f"{dst.url} is not a prepared dataset (no {INFO_FILE}); run `pix2pix prepare` first"
        )
    info = info_loc.read_json()
    if info.get("schema_version") != SCHEMA_VERSION:
        raise UserError(
            f"{info_loc.url}: schema version {info.get('schema_version')!r}, "
            f"this version reads {SCHEMA_VERSION}; prepare the dataset again"
        )
    return info


def decode_pairs(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A Ray Data batch of encoded pairs -> `key`, `a`, `b` (uint8 N x H x W x 3)."""
    return {
        "key": batch["key"],
        "a": np.stack([decode_stored(x) for x in batch["a"]]),
        "b": np.stack([decode_stored(x) for x in batch["b"]]),
    }


def existing_split(dst: Location, split: str) -> Location:
    """The folder of a prepared split that has rows; a UserError naming the splits there
    are otherwise."""
    counts = read_info(dst).get("counts", {})
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if not counts.get(split):
        available = [s for s in SPLITS if counts.get(s)]
        raise UserError(
            f"{dst.url} has no {split!r} split; it has: {', '.join(available) or 'nothing'}"
        )
    return split_location(dst, split)


def read_prepared(dst: Location, split: str, *, decode: bool = True):  # -> ray.data.Dataset
    """The prepared `split` as a Ray Dataset of `key`, `a`, `b` (decoded uint8 arrays).

    With `decode=False` the rows keep every stored column, images still encoded.
    """
    import ray.data

    loc = existing_split(dst, split)
    # Ray 2.60's default Parquet reader (datasource V2) starts a pool of footer-reading
    # actors every time the dataset executes: seconds of process start-up per epoch
    # (7 s here, on a dozen rows; V1 took 0.3 s). Its V1 reader is the one used here.
    # Its footer sampling also draws a progress bar, of a fraction of a second, kept out.
    context = ray.data.DataContext.get_current()
    saved = context.use_datasource_v2, context.enable_progress_bars
    context.use_datasource_v2, context.enable_progress_bars = False, False
    try:
        ds = ray.data.read_parquet(loc.path, filesystem=loc.arrow_fs, file_extensions=["parquet"])
    finally:
        context.use_datasource_v2, context.enable_progress_bars = saved
    ds.context.enable_progress_bars = saved[1]  # the dataset's own copy of the context
    if not decode:
        return ds
    return ds.map_batches(decode_pairs, batch_format="numpy", batch_size=16)
