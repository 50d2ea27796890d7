"""Validation after each epoch: L1, PSNR, SSIM on the val split, and a sample grid.

The driver reads the val split once (still encoded, in key order) and puts it in the
object store; each worker decodes and translates its share of the pairs (pair i goes to
rank i mod world size), and the metrics are reduced across ranks (torchmetrics). A
per-epoch Ray Data pipeline on every worker would compete with the training input for the
same few CPUs.

The generator runs at test time exactly as `pix2pix evaluate` runs it
(pix2pix_core.inference.translated_pairs): each pair resampled once to crop_size, the
recorded semantics, outputs that do not depend on the batch size or the number of workers.

FID needs Inception features, and no weights are downloaded at run time: with
`--fid_weights URL` (a TorchScript module that maps uint8 N x 3 x H x W images to N x D
features, e.g. an exported Inception-v3 pool3) FID is computed too (torchmetrics).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from pipelines.common.dataset import EncodedPair, decode_pair, decoded_channels
from pipelines.common.names import METRICS, VAL_FID
from pipelines.common.storage import Location
from pix2pix_core import ImageMetrics, Pix2Pix, to_uint8
from pix2pix_core.geometry import resample
from pix2pix_core.inference import from_state_dict, translated_pairs


def validate(
    model: Pix2Pix,
    pairs: list[EncodedPair],
    *,
    crop_size: int,
    preprocess: str = "resize_and_crop",
    batch_size: int,
    eval_mode: bool,
    rank: int,
    world: int,
    grid_size: int,
    fid_features: torch.nn.Module | None = None,
    colorization: bool = False,
) -> tuple[dict[str, float], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """({val_L1, val_PSNR, val_SSIM[, val_FID]}, and on rank 0 the (input, output, target)
    of the first `grid_size` val pairs). `colorization`: scored and shown in RGB."""
    metrics = ImageMetrics().to(model.device)
    fid = _fid(fid_features, model.device)
    # The test-time generator on the model's own tensors: no copy, the model left as it is.
    generator = from_state_dict(
        model.generator_config, model.generator_module.state_dict(), eval_mode=eval_mode
    )
    mine = pairs[rank::world]
    config = model.generator_config
    channels = decoded_channels(config.input_nc, config.output_nc, colorization)
    rows: list[tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = []  # (pair index, row)
    done = 0  # pairs of this rank scored so far
    with torch.inference_mode():
        batches = translated_pairs(
            generator,
            (decode_pair(pair, channels) for pair in mine),
            tile=crop_size,
            batch_size=batch_size,
            preprocess=preprocess,
            colorization=colorization,
            device=model.device,
        )
        for real_a, fake_b, real_b in batches:
            metrics.update(fake_b, real_b)
            if fid is not None:
                fid.update((real_b + 1) / 2, real=True)
                fid.update((fake_b.clamp(-1, 1) + 1) / 2, real=False)
            index = rank + done * world  # the pair's place in the val split
            if index < grid_size:
                # The grid's cells are crop_size squares, whatever size the pair has.
                cells = (to_uint8(x)[0] for x in (real_a, fake_b, real_b))
                rows.append((index, tuple(resample(c, crop_size, crop_size) for c in cells)))
            done += 1
    values = metrics.compute()  # a collective under torch.distributed: every rank calls it
    out = {m.reported: values[m.name] for m in METRICS.values()}
    if fid is not None:
        out[VAL_FID] = float(fid.compute())
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
