"""Validation after each epoch: L1, PSNR, SSIM on the val split, and a sample grid.

Every worker reads the whole val split and translates its share of the batches (batch i
goes to rank i mod world size); the metrics are reduced across ranks (torchmetrics). The
images are resized from the prepared load_size to crop_size, as `pix2pix evaluate` does,
so the numbers are comparable. With the paper's test-time setting (`eval=False`: dropout
on, batch statistics) and synchronised batch norm, a forward pass is a collective: ranks
with one batch fewer run a discarded pass so that all take part in the same number.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pix2pix_core import ImageMetrics, Pix2Pix, resize, to_tensor, to_uint8


def validate(
    model: Pix2Pix,
    val_shard,  # ray.data.DataIterator of a, b (uint8 NHWC)
    *,
    crop_size: int,
    batch_size: int,
    eval_mode: bool,
    rank: int,
    world: int,
    grid_size: int,
) -> tuple[dict[str, float], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """({val_L1, val_PSNR, val_SSIM}, up to `grid_size` (input, output, target) on rank 0)."""
    metrics = ImageMetrics().to(model.device)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    lockstep = not eval_mode and model.generator_config.norm == "syncbatch" and world > 1
    owned, total, spare = 0, 0, None
    for i, batch in enumerate(
        val_shard.iter_torch_batches(batch_size=batch_size, device=model.device)
    ):
        total += 1
        if i % world != rank:
            if spare is None and lockstep:
                spare = batch["a"]
            continue
        real_a = resize(to_tensor(batch["a"]), crop_size)
        real_b = resize(to_tensor(batch["b"]), crop_size)
        fake_b = model.translate(real_a, eval_mode=eval_mode)
        metrics.update(fake_b, real_b)
        owned += 1
        if spare is None:
            spare = batch["a"]
        if rank == 0 and len(rows) < grid_size:
            for a, f, b in zip(to_uint8(real_a), to_uint8(fake_b), to_uint8(real_b), strict=True):
                if len(rows) < grid_size:
                    rows.append((a, f, b))
    if lockstep and spare is not None:
        for _ in range(math.ceil(total / world) - owned):
            model.translate(resize(to_tensor(spare), crop_size), eval_mode=eval_mode)
    values = metrics.compute()  # a collective under torch.distributed: every rank calls it
    return {
        "val_L1": values["l1"],
        "val_PSNR": values["psnr"],
        "val_SSIM": values["ssim"],
    }, rows


def mean_across_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each value over all ranks (a collective; identity without a group)."""
    import torch.distributed as dist

    if not values or not (dist.is_available() and dist.is_initialized()):
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def sum_across_ranks(value: float, device: torch.device) -> float:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())
