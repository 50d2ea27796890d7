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
import math
from dataclasses import dataclass

import torch

from pipelines.common.dataset import dataset_mode, iter_pairs, read_info, split_fingerprint
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
from pix2pix_core.inference import translated_pairs
from pix2pix_core.metrics import ImageMetrics


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

    The model runs with its recorded test-time semantics, unless `eval_mode` says otherwise
    (pix2pix_core.inference: in the paper's, dropout masks come from each image and
    `seed`, so two evaluations agree whatever the batch size). Each image is resampled once,
    from what prepare stored to the model's size, as validation does.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be positive, got {batch_size!r}")
    mode = dataset_mode(read_info(dst))
    if mode != loaded.dataset_mode:
        raise UserError(
            f"{dst.url} was prepared with --dataset_mode {mode}, the model was trained on "
            f"--dataset_mode {loaded.dataset_mode} data; evaluate it on data of its kind"
        )
    device = next(loaded.module.parameters()).device
    generator = loaded.for_test(eval_mode=eval_mode, seed=seed)
    metrics = ImageMetrics()
    pairs = iter_pairs(dst, split, loaded.image_channels)
    with torch.inference_mode():
        for _, fake_b, real_b in translated_pairs(
            generator,
            pairs,
            tile=loaded.crop_size,
            batch_size=batch_size,
            preprocess=loaded.preprocess,
            colorization=loaded.colorization,
            device=device,
        ):
            metrics.update(fake_b.cpu(), real_b.cpu())
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
    data.check_access("--data")
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
