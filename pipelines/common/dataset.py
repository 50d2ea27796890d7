"""The prepared dataset: what `pix2pix prepare` writes and every later step reads.

    DST/
      dataset.json          schema version, counts per split, sizes, direction, dataset
                            mode, source, fingerprint of the inputs
      quarantine.parquet    one row per unusable input: url, reason
      train/*.parquet       one row per pair, columns `PAIR_SCHEMA`
      val/*.parquet
      test/*.parquet        (only if the source has a test split)

Images are stored losslessly encoded (uncompressed TIFF; the Parquet column is LZ4
compressed); `images.decode_stored` reads any format Pillow reads. Train pairs are resized
to `load_size` x `load_size`, and the random crop to `crop_size` and the flip happen at
training time, anew each epoch. Val and test pairs keep their source size (longer sides
scaled down to `held_out_max_side`), so that validation and evaluation resample each image
once, from the source to the model's size, as the official test does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
        ("a", pa.binary()),  # input image, lossless (TIFF), RGB (see above for its size)
        ("b", pa.binary()),  # target image, same encoding and size
        ("width", pa.int32()),  # of the stored images
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


Channels = tuple[int, int]  # of A and of B: a model's input_nc and output_nc
COLORIZATION_CHANNELS: Channels = (1, 2)  # a colorization model's: L in, ab out


def decoded_channels(input_nc: int, output_nc: int, colorization: bool) -> Channels:
    """The channels to decode a model's stored A and B with: its own, or for colorization
    the RGB picture on both sides (its L and ab are taken after the resize and jitter)."""
    return (3, 3) if colorization else (input_nc, output_nc)


def decode_pairs(
    batch: dict[str, np.ndarray], channels: Channels = (3, 3)
) -> dict[str, np.ndarray]:
    """A Ray Data batch of encoded pairs -> `key`, `a`, `b` (uint8 N x H x W x C)."""
    return {
        "key": batch["key"],
        "a": np.stack([decode_stored(x, channels[0]) for x in batch["a"]]),
        "b": np.stack([decode_stored(x, channels[1]) for x in batch["b"]]),
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


def read_prepared(
    dst: Location, split: str, *, decode: bool = True, channels: Channels = (3, 3)
):  # -> ray.data.Dataset
    """The prepared `split` as a Ray Dataset of `key`, `a`, `b` (decoded uint8 arrays, with
    `channels` for A and B).

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
    return ds.map_batches(
        decode_pairs, batch_format="numpy", batch_size=16, fn_kwargs={"channels": channels}
    )


EncodedPair = tuple[str, bytes, bytes]  # key, a, b as stored


def read_encoded_pairs(dst: Location, split: str, limit: int | None = None) -> list[EncodedPair]:
    """The pairs of a prepared split, still encoded, in key order (at most `limit`), read
    with pyarrow in this process (no Ray): held-out splits are small."""
    loc = existing_split(dst, split)
    shards = sorted(p for p in loc.fs.find(loc.path) if p.endswith(".parquet"))
    if not shards:
        raise UserError(f"{loc.url}: no Parquet shards; prepare the dataset again")
    table = pads.dataset(shards, filesystem=loc.arrow_fs, format="parquet").to_table(
        columns=["key", "a", "b"]
    )
    table = table.take(pc.sort_indices(table, sort_keys=[("key", "ascending")]))
    if limit is not None:
        table = table.slice(0, limit)
    columns = (table[name].to_pylist() for name in ("key", "a", "b"))
    return list(zip(*columns, strict=True))


def decode_pair(pair: EncodedPair, channels: Channels = (3, 3)) -> tuple[np.ndarray, np.ndarray]:
    """An encoded pair's (a, b), uint8 H x W x C."""
    _, a, b = pair
    return decode_stored(a, channels[0]), decode_stored(b, channels[1])


def iter_pairs(
    dst: Location, split: str, channels: Channels = (3, 3)
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(a, b) of each pair of a prepared split, decoded one at a time, in key order."""
    for pair in read_encoded_pairs(dst, split):
        yield decode_pair(pair, channels)


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
    if dataset_mode(info) != "aligned":  # only then: aligned splits keep their fingerprints
        identity["dataset_mode"] = dataset_mode(info)
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepared_preprocess(info: dict[str, Any]) -> str:
    """The `--preprocess` a dataset was prepared with (datasets from before it: the
    default, resize_and_crop)."""
    return str(info.get("preprocess") or "resize_and_crop")


def dataset_mode(info: dict[str, Any]) -> str:
    """The `--dataset_mode` a dataset was prepared with (datasets from before it: aligned)."""
    return str(info.get("dataset_mode") or "aligned")


def stored_train_sizes(dst: Location) -> set[tuple[int, int]]:
    """The (width, height) of the stored train images, from their columns alone."""
    loc = existing_split(dst, "train")
    table = pads.dataset(loc.path, filesystem=loc.arrow_fs, format="parquet").to_table(
        columns=["width", "height"]
    )
    return set(zip(table["width"].to_pylist(), table["height"].to_pylist(), strict=True))
