"""`pix2pix evaluate`: L1, PSNR and SSIM of any generator on a prepared split.

The model is anything `pipelines.common.models.load_generator_from_uri` loads (a registry URI, a
checkpoint URL, an official `*_net_G.pth`). The metrics are `pix2pix_core.metrics`, the
code training validation uses, on the same inputs: the prepared pairs resized to the
model's crop size when they are not at it.

Evaluation runs in one process: it streams the split's Parquet shards with pyarrow and
runs the model on the driver, so it needs no Ray cluster. Held-out splits are small next
to training data, and the generator's forward, not the decoding, is what costs.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.dataset as pads
import torch

from pipelines.common.dataset import decode_pairs, existing_split, read_info
from pipelines.common.errors import UserError
from pipelines.common.models import (
    METRIC_NAMES,
    LoadedGenerator,
    load_generator_from_uri,
    resolve_device,
)
from pipelines.common.storage import Location
from pipelines.common.text import count
from pipelines.config.options import CommonOptions, add_options, load_options, option
from pix2pix_core import GeneratorConfig
from pix2pix_core.metrics import ImageMetrics
from pix2pix_core.transforms import resize, to_tensor

METRICS = METRIC_NAMES
_OFFICIAL = GeneratorConfig()  # the official defaults, for *_net_G.pth files


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


def iter_pairs(dst: Location, split: str, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `key`, `a`, `b` (uint8 N x H x W x 3) of a prepared split, in shard order."""
    loc = existing_split(dst, split)
    shards = sorted(p for p in loc.fs.find(loc.path) if p.endswith(".parquet"))
    if not shards:
        raise UserError(f"{loc.url}: no Parquet shards; prepare the dataset again")
    table = pads.dataset(shards, filesystem=loc.arrow_fs, format="parquet")
    for batch in table.to_batches(columns=["key", "a", "b"], batch_size=batch_size):
        if batch.num_rows:
            yield decode_pairs({name: batch.column(name).to_pylist() for name in ("key", "a", "b")})


def _inference_copy(loaded: LoadedGenerator, eval_mode: bool) -> torch.nn.Module:
    """The module set up for inference; in train mode a copy, since batch norm in train
    mode updates its running statistics and the loaded weights must stay as saved."""
    module = loaded.module if eval_mode else copy.deepcopy(loaded.module)
    module.train(not eval_mode)
    return module


def evaluate_model(
    loaded: LoadedGenerator,
    dst: Location,
    split: str,
    *,
    batch_size: int = 16,
    eval_mode: bool | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """{"l1", "psnr", "ssim"} of `loaded` on the prepared `split` of `dst`.

    `eval_mode` None uses the model's saved setting. In train mode (dropout on) each image
    goes through alone, as in the official test, and dropout is seeded with `seed` so that
    two evaluations of the same model agree.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be positive, got {batch_size!r}")
    eval_mode = loaded.eval_mode if eval_mode is None else eval_mode
    module = _inference_copy(loaded, eval_mode)
    device = next(module.parameters()).device
    size = loaded.crop_size
    chunk = batch_size if eval_mode else 1
    metrics = ImageMetrics()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.inference_mode():
            for batch in iter_pairs(dst, split, batch_size):
                real_a, real_b = to_tensor(batch["a"]), to_tensor(batch["b"])
                if real_a.shape[-2:] != (size, size):
                    real_a, real_b = resize(real_a, (size, size)), resize(real_b, (size, size))
                for start in range(0, len(real_a), chunk):
                    fake_b = module(real_a[start : start + chunk].to(device))
                    metrics.update(fake_b.float().cpu(), real_b[start : start + chunk])
    finally:
        torch.random.set_rng_state(generator_state)
    values = metrics.compute()
    return {name: float(values[name]) for name in METRICS}


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """What to evaluate, on what."""

    model: str | None = option(
        None,
        "models:/NAME@alias, models:/NAME/VERSION, runs:/..., a checkpoint URL, *_net_G.pth",
        required=True,
    )
    data: str | None = option(
        None, "prepared dataset (the output of `pix2pix prepare`)", required=True
    )
    split: str = option("test", "split to evaluate on: train | val | test")
    batch_size: int = option(16, "images per forward (in eval mode)")
    eval: bool | None = option(
        None, "dropout off, running statistics; unset: as the model was validated"
    )
    device: str = option("auto", "torch device: auto (CUDA if torch sees a GPU), cpu, cuda:N")
    log: bool = option(False, "log the metrics to a new MLflow run of --experiment")
    netG: str = option(_OFFICIAL.netG, "official *_net_G.pth only: its generator")
    ngf: int = option(_OFFICIAL.ngf, "official *_net_G.pth only: its ngf")
    norm: str = option(_OFFICIAL.norm, "official *_net_G.pth only: its norm")
    no_dropout: bool = option(False, "official *_net_G.pth only: trained with --no_dropout")

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("--model is required")
        if not self.data:
            raise ValueError("--data is required")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size!r}")

    def official_config(self) -> GeneratorConfig | None:
        if not self.model.endswith("_net_G.pth"):
            return None
        return GeneratorConfig(
            netG=self.netG, ngf=self.ngf, norm=self.norm, use_dropout=not self.no_dropout
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, EvaluateOptions, CommonOptions)


def _log_to_mlflow(common: CommonOptions, opts: EvaluateOptions, result: dict[str, Any]) -> str:
    import mlflow

    from pipelines.common.tracking import git_commit, setup_mlflow

    experiment_id = setup_mlflow(common.tracking_uri, common.experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=common.run_name) as run:
        mlflow.set_tags(
            {
                "pix2pix.verb": "evaluate",
                "pix2pix.model": opts.model,
                "pix2pix.dataset": opts.data,
                "pix2pix.split": opts.split,
                "pix2pix.split_fingerprint": result["split_fingerprint"],
                "git_commit": git_commit() or "unknown",
            }
        )
        mlflow.log_metrics({f"{opts.split}_{k}": result[k] for k in METRICS})
    return run.info.run_id


def run(args: argparse.Namespace) -> int:
    opts, common = load_options(args, EvaluateOptions, CommonOptions)
    device = resolve_device(opts.device)
    try:
        official = opts.official_config()
    except ValueError as err:
        raise UserError(str(err)) from None
    if opts.model.startswith(("models:/", "runs:/")):
        import mlflow

        from pipelines.common.tracking import resolve_tracking_uri

        mlflow.set_tracking_uri(resolve_tracking_uri(common.tracking_uri))
    data = Location.parse(opts.data, common.storage_options)
    fingerprint = split_fingerprint(data, opts.split)
    loaded = load_generator_from_uri(
        opts.model, storage_options=common.storage_options, official=official, device=device
    )
    metrics = evaluate_model(
        loaded, data, opts.split, batch_size=opts.batch_size, eval_mode=opts.eval
    )
    pairs = read_info(data)["counts"][opts.split]
    line = " ".join(
        f"{k.upper()} {v:.4f}" if math.isfinite(v) else f"{k.upper()} {v}"
        for k, v in metrics.items()
    )
    print(f"{opts.model} on {opts.split} ({count(pairs, 'pair')}, split {fingerprint}): {line}")
    if opts.log:
        run_id = _log_to_mlflow(common, opts, {**metrics, "split_fingerprint": fingerprint})
        print(f"logged to MLflow run {run_id}")
    return 0
