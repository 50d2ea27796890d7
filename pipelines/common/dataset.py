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

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from pipelines.common.errors import UserError
from pipelines.common.images import decode_stored
from pipelines.common.names import File
from pipelines.common.storage import Location

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
INFO_FILE, QUARANTINE_FILE = File.DATASET_INFO, File.QUARANTINE

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
    import ray.data  # here only: evaluate reads splits without Ray (iter_pairs)

    loc = existing_split(dst, split)
    # Ray Data's default Parquet reader starts a pool of footer-reading actors every time
    # the dataset executes, seconds per epoch; the V1 reader does not
    # (docs/design.md#the-parquet-datasource-v1-reader). Its footer sampling also draws a
    # progress bar of a fraction of a second, kept out.
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


def iter_pairs(dst: Location, split: str, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `key`, `a`, `b` (decoded uint8 N x H x W x 3) of a prepared split, in
    shard order, read with pyarrow in this process (no Ray)."""
    loc = existing_split(dst, split)
    shards = sorted(p for p in loc.fs.find(loc.path) if p.endswith(".parquet"))
    if not shards:
        raise UserError(f"{loc.url}: no Parquet shards; prepare the dataset again")
    table = pads.dataset(shards, filesystem=loc.arrow_fs, format="parquet")
    for batch in table.to_batches(columns=["key", "a", "b"], batch_size=batch_size):
        if batch.num_rows:
            yield decode_pairs({name: batch.column(name).to_pylist() for name in ("key", "a", "b")})


def split_fingerprint(dst: Location, split: str) -> str:
    """Names the exact pairs of `split`: the sources' fingerprint and how they were prepared.

    Two evaluations with the same split fingerprint saw the same images.
    """
    info = read_info(dst)
    if not info.get("counts", {}).get(split):
        raise UserError(f"{dst.url} has no {split!r} split")
    identity = {
        key: info.get(key)
        for key in ("fingerprint", "direction", "load_size", "width", "height", "val_carved")
    }
    identity |= {"split": split, "count": info["counts"][split]}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
