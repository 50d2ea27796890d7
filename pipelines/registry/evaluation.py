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
import math
from dataclasses import dataclass

import torch

from pipelines.common.dataset import iter_pairs, read_info, split_fingerprint
from pipelines.common.errors import UserError
from pipelines.common.models import (
    LoadedGenerator,
    load_generator_from_uri,
    official_architecture,
    resolve_device,
)
from pipelines.common.names import METRIC_NAMES, Tag
from pipelines.common.storage import Location
from pipelines.common.text import count
from pipelines.config.fields import option
from pipelines.config.groups import (
    ArchitectureOptions,
    ExperimentOptions,
    StorageOptions,
    TrackingOptions,
)
from pipelines.config.loader import add_options, given, load_options
from pix2pix_core.metrics import ImageMetrics
from pix2pix_core.transforms import resize, to_tensor


def _inference_copy(loaded: LoadedGenerator, eval_mode: bool) -> torch.nn.Module:
    """The module set up for inference; in train mode a copy, since batch norm in train
    mode updates its running statistics and the loaded weights must stay as saved."""
    module = loaded.module if eval_mode else copy.deepcopy(loaded.module)
    module.train(not eval_mode)
    return module


def evaluate(
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
    return {name: float(values[name]) for name in METRIC_NAMES}


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

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("--model is required")
        if not self.data:
            raise ValueError("--data is required")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size!r}")


OPTION_GROUPS = (
    EvaluateOptions,
    ArchitectureOptions,
    StorageOptions,
    TrackingOptions,
    ExperimentOptions,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, *OPTION_GROUPS)


def _log_to_mlflow(
    opts: EvaluateOptions,
    tracking: TrackingOptions,
    experiment: ExperimentOptions,
    metrics: dict[str, float],
    fingerprint: str,
) -> str:
    # MLflow only with --log: its import takes seconds.
    from mlflow import MlflowClient

    from pipelines.common.tracking import log_metrics, open_run, resolve_tracking_uri

    tracked = open_run(
        tracking.tracking_uri,
        experiment.experiment,
        f"evaluate-{opts.split}",
        tags={
            Tag.VERB: "evaluate",
            Tag.MODEL: opts.model,
            Tag.DATASET: opts.data,
            Tag.SPLIT: opts.split,
            Tag.SPLIT_FINGERPRINT: fingerprint,
        },
    )
    client = MlflowClient(resolve_tracking_uri(tracking.tracking_uri))
    log_metrics(client, tracked.run_id, {f"{opts.split}_{k}": v for k, v in metrics.items()})
    client.set_terminated(tracked.run_id, status="FINISHED")
    return tracked.run_id


def run(args: argparse.Namespace) -> int:
    opts, architecture, storage, tracking, experiment = load_options(args, *OPTION_GROUPS)
    device = resolve_device(opts.device)
    official = official_architecture(
        opts.model, architecture.generator_config(), given(args, ArchitectureOptions)
    )
    data = Location.parse(opts.data, storage.storage_options)
    fingerprint = split_fingerprint(data, opts.split)
    loaded = load_generator_from_uri(
        opts.model,
        storage_options=storage.storage_options,
        official=official,
        tracking_uri=tracking.tracking_uri,
        device=device,
    )
    metrics = evaluate(loaded, data, opts.split, batch_size=opts.batch_size, eval_mode=opts.eval)
    pairs = read_info(data)["counts"][opts.split]
    line = " ".join(
        f"{k.upper()} {v:.4f}" if math.isfinite(v) else f"{k.upper()} {v}"
        for k, v in metrics.items()
    )
    print(f"{opts.model} on {opts.split} ({count(pairs, 'pair')}, split {fingerprint}): {line}")
    if opts.log:
        run_id = _log_to_mlflow(opts, tracking, experiment, metrics, fingerprint)
        print(f"logged to MLflow run {run_id}")
    return 0
