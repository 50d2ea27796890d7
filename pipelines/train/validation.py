"""Validation after each epoch: L1, PSNR, SSIM on the val split, and a sample grid.

The driver reads the val split once (still PNG-encoded, ordered by key) and puts it in
the object store; each worker decodes and translates its share of the batches (batch i
goes to rank i mod world size), and the metrics are reduced across ranks (torchmetrics).
A per-epoch Ray Data pipeline on every worker would compete with the training input for
the same few CPUs. Images are resized from the prepared load_size to crop_size, as
`pix2pix evaluate` does, so the numbers are comparable. With the paper's test-time
setting (`eval=False`: dropout on, batch statistics) and synchronised batch norm, a
forward pass is a collective: ranks with one batch fewer run a discarded pass so that
every rank takes part in the same number.

FID needs Inception features, and no weights are downloaded at run time: with
`--fid_weights URL` (a TorchScript module that maps uint8 N x 3 x H x W images to N x D
features, e.g. an exported Inception-v3 pool3) FID is computed too (torchmetrics).
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import torch
import torch.distributed as dist

from pipelines.common.dataset import split_location
from pipelines.common.images import decode_stored
from pipelines.common.storage import Location
from pix2pix_core import ImageMetrics, Pix2Pix, resize, to_tensor, to_uint8

EncodedPair = tuple[bytes, bytes]


def read_val_pairs(data: Location, limit: int | None = None) -> list[EncodedPair]:
    """The val split's (a, b) images, encoded, in key order (the grid shows the same ones)."""
    loc = split_location(data, "val")
    table = pads.dataset(loc.path, filesystem=loc.arrow_fs, format="parquet").to_table(
        columns=["key", "a", "b"]
    )
    table = table.take(pc.sort_indices(table, sort_keys=[("key", "ascending")]))
    if limit is not None:
        table = table.slice(0, limit)
    return list(zip(table["a"].to_pylist(), table["b"].to_pylist(), strict=True))


def _decode(pairs: list[EncodedPair], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    a = np.stack([decode_stored(x) for x, _ in pairs])
    b = np.stack([decode_stored(y) for _, y in pairs])
    return to_tensor(torch.from_numpy(a).to(device)), to_tensor(torch.from_numpy(b).to(device))


def validate(
    model: Pix2Pix,
    pairs: list[EncodedPair],
    *,
    crop_size: int,
    batch_size: int,
    eval_mode: bool,
    rank: int,
    world: int,
    grid_size: int,
    fid_features: torch.nn.Module | None = None,
) -> tuple[dict[str, float], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """({val_L1, val_PSNR, val_SSIM[, val_FID]}, and on rank 0 the (input, output, target)
    of the first `grid_size` val pairs)."""
    metrics = ImageMetrics().to(model.device)
    fid = _fid(fid_features, model.device)
    rows: list[tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = []  # (pair index, row)
    batches = [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]
    mine = batches[rank::world]
    for k, batch in enumerate(mine):
        first = (rank + k * world) * batch_size
        real_a, real_b = (resize(x, crop_size) for x in _decode(batch, model.device))
        fake_b = model.translate(real_a, eval_mode=eval_mode)
        metrics.update(fake_b, real_b)
        if fid is not None:
            fid.update((real_b + 1) / 2, real=True)
            fid.update((fake_b.clamp(-1, 1) + 1) / 2, real=False)
        if first < grid_size:
            images = zip(to_uint8(real_a), to_uint8(fake_b), to_uint8(real_b), strict=True)
            rows += [(first + j, row) for j, row in enumerate(images) if first + j < grid_size]
    lockstep = not eval_mode and model.generator_config.norm == "syncbatch" and world > 1
    if lockstep and batches:
        spare = resize(_decode(batches[0], model.device)[0], crop_size)
        for _ in range(math.ceil(len(batches) / world) - len(mine)):
            model.translate(spare, eval_mode=eval_mode)
    values = metrics.compute()  # a collective under torch.distributed: every rank calls it
    out = {"val_L1": values["l1"], "val_PSNR": values["psnr"], "val_SSIM": values["ssim"]}
    if fid is not None:
        out["val_FID"] = float(fid.compute())
    return out, _gather_rows(rows, rank)


def _gather_rows(rows: list, rank: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The grid rows of every rank, on rank 0, in val order (a collective)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list | None = [None] * dist.get_world_size() if rank == 0 else None
        dist.gather_object(rows, gathered, dst=0)
        rows = [row for part in gathered or [] for row in part]
    return [row for _, row in sorted(rows, key=lambda r: r[0])] if rank == 0 else []


def load_fid_features(url: str | None, storage_options: dict[str, Any], device: torch.device):
    """The user's TorchScript feature extractor for FID, or None without one."""
    if not url:
        return None
    data = Location.parse(url, storage_options).read_bytes()
    return torch.jit.load(io.BytesIO(data), map_location=device).eval()


def _fid(features: torch.nn.Module | None, device: torch.device):
    if features is None:
        return None
    # Only with --fid_weights: torchmetrics.image takes seconds to import.
    from torchmetrics.image.fid import FrechetInceptionDistance

    # normalize=True: images arrive as floats in [0, 1], the extractor gets uint8.
    return FrechetInceptionDistance(feature=features, normalize=True).to(device)


def mean_across_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each value over all ranks (a collective; identity without a group)."""
    if not values or not (dist.is_available() and dist.is_initialized()):
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def sum_across_ranks(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())
