"""The task stages of `pix2pix translate`: read + decode before the model, encode + write after.

Both run as Ray Data tasks on numpy batches (no torch here, so task workers start light).
Images travel between stages as raw uint8 bytes with their shape (`h`, `w`, `c`): plain
Arrow binary columns, whatever the mix of sizes in a batch. A row that failed carries its
reason through the model stage untouched, and the write stage records every row, so each
input ends as an output or as a failure with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.common.fetch import read_many, read_problem
from pipelines.common.images import BadImage, Picture, decode, encode, split_aligned
from pipelines.common.storage import Location
from pipelines.translate.manifest import record, write_part
from pix2pix_core.geometry import min_decoded_side, model_input_size, resample

Batch = dict[str, np.ndarray]


def pack(image: np.ndarray) -> tuple[bytes, int, int, int]:
    return image.tobytes(), *image.shape


def unpack(data: bytes, h: int, w: int, c: int) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).reshape(int(h), int(w), int(c))


@dataclass
class _Prepared:
    pixels: np.ndarray  # what the model sees; empty when the input failed
    alpha: np.ndarray | None = None
    height: int = 0  # the input's size, which the output gets back
    width: int = 0
    reason: str = ""
    note: str = ""


def model_input(
    data: bytes,
    *,
    channels: int,
    side: str,
    tile: int,
    mode: str,
    load_size: int | None,
    preprocess: str = "resize_and_crop",
    max_pixels: int,
) -> tuple[np.ndarray, Picture]:
    """One file -> (the pixels the model is given, the picture they come from: its size and
    alpha are the output's), or BadImage.

    The size is `geometry.model_input_size`'s (the scale the model was trained at, by
    default). The rule is prepare's, so that an image resized as training's sources were
    gets the pixels training saw: the same decode, split and resize, and a reduced-scale
    JPEG decode requested exactly as prepare requests it (twice the side for a half of an
    A|B image).
    """
    halves = side in ("A", "B")
    if mode == "tile":
        least = 0
    elif mode == "resize" or load_size is None:
        least = tile
    else:
        least = min_decoded_side(preprocess, load_size)
    picture = decode(data, max_pixels=max_pixels, channels=channels, min_side=(1 + halves) * least)
    if halves:
        left, right = split_aligned(picture)
        picture = left if side == "A" else right
    height, width = picture.pixels.shape[:2]
    size = model_input_size(
        width, height, mode=mode, tile=tile, load_size=load_size, preprocess=preprocess
    )
    return resample(picture.pixels, size[1], size[0]), picture


def _prepare(raw: bytes | Exception, *, channels: int, **input_args) -> _Prepared:
    empty = np.zeros((0, 0, channels), np.uint8)
    try:
        if isinstance(raw, Exception):
            raise BadImage(read_problem(raw))
        pixels, picture = model_input(raw, channels=channels, **input_args)
        width, height = picture.size  # the full size (only alpha-less JPEGs decode smaller)
        return _Prepared(pixels, picture.alpha, height, width, note=picture.note)
    except BadImage as err:
        return _Prepared(empty, reason=str(err))
    except Exception as err:  # a decoder bug must cost one file, not the job
        return _Prepared(empty, reason=f"cannot decode: {type(err).__name__}: {err}")


def read_and_decode(
    batch: Batch,
    *,
    storage_options: dict[str, Any],
    max_pixels: int,
    channels: int,
    side: str,
    tile: int,
    mode: str,
    load_size: int | None,
    preprocess: str = "resize_and_crop",
) -> Batch:
    """`url` -> decoded pixels at the size the model will see (`model_input`), or a reason."""
    urls = [str(u) for u in batch["url"]]
    data = read_many(urls, storage_options)
    args = {
        "side": side,
        "tile": tile,
        "mode": mode,
        "load_size": load_size,
        "preprocess": preprocess,
    }
    rows = [_prepare(data[url], channels=channels, max_pixels=max_pixels, **args) for url in urls]
    packed = [pack(r.pixels) for r in rows]
    return {
        "url": batch["url"],
        "output": batch["output"],
        "pixels": np.asarray([p[0] for p in packed], dtype=object),
        "h": np.asarray([p[1] for p in packed]),
        "w": np.asarray([p[2] for p in packed]),
        "c": np.asarray([p[3] for p in packed]),
        "alpha": np.asarray(
            [b"" if r.alpha is None else r.alpha.tobytes() for r in rows], dtype=object
        ),
        "height": np.asarray([r.height for r in rows]),
        "width": np.asarray([r.width for r in rows]),
        "reason": np.asarray([r.reason for r in rows], dtype=object),
        "note": np.asarray([r.note for r in rows], dtype=object),
    }


def encode_and_write(batch: Batch, *, dst: str, storage_options: dict[str, Any], fmt: str) -> Batch:
    """Translated pixels -> files under DST, back at the input's size; a manifest part."""
    records = []
    for i, url in enumerate(batch["url"]):
        url, output = str(url), str(batch["output"][i])
        reason = str(batch["reason"][i])
        if reason:
            records.append(record(url, reason=reason))
            continue
        try:
            height, width = int(batch["height"][i]), int(batch["width"][i])
            image = unpack(batch["pixels"][i], batch["h"][i], batch["w"][i], batch["c"][i])
            image = resample(image, height, width)
            alpha_bytes = batch["alpha"][i]
            alpha = (
                np.frombuffer(alpha_bytes, np.uint8).reshape(height, width)
                if len(alpha_bytes)
                else None
            )
            data, note = encode(image, fmt, alpha)
            Location(output, storage_options).write_bytes(data)
        except Exception as err:
            records.append(
                record(url, reason=f"cannot write {output}: {type(err).__name__}: {err}")
            )
            continue
        notes = "; ".join(n for n in (str(batch["note"][i]), note) if n)
        records.append(record(url, output=output, note=notes))
    # After the outputs: a record "done" always means the output is complete.
    write_part(Location(dst, storage_options), records)
    return {
        "url": np.asarray([r["input"] for r in records], dtype=object),
        "status": np.asarray([r["status"] for r in records], dtype=object),
        "reason": np.asarray([r["reason"] or "" for r in records], dtype=object),
    }
