"""`pix2pix train`: plan the run, build its `TorchTrainer`, fit it, record the result.

    run = plan_run(cfg, common)                  # checks, name, folder, MLflow run (plan.py)
    trainer = build_trainer(run, in_memory=holds_in_memory(run), callbacks=...)
    result = finish_run(run, trainer.fit())      # TrainResult, result.json, MLflow status

`train()` does the three; `pix2pix tune` builds the same trainer inside each trial, and the
retrain workflow calls `train()`. The run folder is `STORAGE_PATH/RUN_NAME` (Ray Train's
own run folder):

    run.json                         settings, dataset fingerprint, MLflow run id
    checkpoint_manager_snapshot.json Ray Train's record of checkpoints (what a rerun resumes)
    epoch_0001/ ...                  checkpoints (pipelines.common.checkpoints), best K + latest
    result.json                      written when the run completes; a rerun returns it
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from pipelines.common.names import CHECKPOINT_SCORE, METRICS, File, Tag
from pipelines.common.text import count
from pipelines.config.groups import CommonOptions, RayOptions
from pipelines.config.loader import add_options, load_options
from pipelines.train.options import TrainConfig
from pipelines.train.plan import TrainRun, plan_run
from pipelines.train.trainer import build_trainer, decoded_train_bytes, holds_in_memory


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What a finished run leaves: where its checkpoints are and how good they are."""

    run_name: str
    run_folder: str  # URL
    best_checkpoint: str  # URL of the checkpoint with the lowest val_L1
    latest_checkpoint: str  # URL of the last epoch's checkpoint
    epochs: int  # epochs trained in total
    metrics: dict[str, float]  # of the last epoch
    best_metrics: dict[str, float]  # of the best checkpoint
    mlflow_run_id: str
    experiment_id: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def _checkpoint_url(run: TrainRun, checkpoint) -> str:
    return run.folder.join(checkpoint.path.rstrip("/").rsplit("/", 1)[-1]).url


def finish_run(run: TrainRun, result) -> TrainResult:  # result: ray.train.Result
    """Turn `trainer.fit()`'s result into a TrainResult; record it in storage and MLflow."""
    client = MlflowClient(run.tracking_uri)
    if result.error is not None or result.checkpoint is None:
        client.set_terminated(run.mlflow_run_id, status="FAILED")
        reason = result.error or "no checkpoint was reported"
        raise RuntimeError(f"training run {run.name} failed: {reason}")
    score = CHECKPOINT_SCORE.reported
    scored = [(c, m) for c, m in (result.best_checkpoints or []) if score in m]
    best, best_metrics = min(scored, key=lambda cm: cm[1][score])
    latest_metrics = next(
        (m for c, m in result.best_checkpoints or [] if c.path == result.checkpoint.path),
        result.metrics or {},
    )
    out = TrainResult(
        run_name=run.name,
        run_folder=run.folder.url,
        best_checkpoint=_checkpoint_url(run, best),
        latest_checkpoint=_checkpoint_url(run, result.checkpoint),
        epochs=int(latest_metrics.get("epoch", 0)),
        metrics=_numbers(latest_metrics),
        best_metrics=_numbers(best_metrics),
        mlflow_run_id=run.mlflow_run_id,
        experiment_id=run.experiment_id,
    )
    run.folder.join(File.RUN_RESULT).write_json(out.to_dict())
    client.set_tag(run.mlflow_run_id, Tag.BEST_CHECKPOINT, out.best_checkpoint)
    client.set_terminated(run.mlflow_run_id, status="FINISHED")
    return out


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def completed_result(run: TrainRun) -> TrainResult | None:
    """The result of an earlier, completed run of this name, if there is one."""
    loc = run.folder.join(File.RUN_RESULT)
    if not loc.exists():
        return None
    done = TrainResult.from_dict(loc.read_json())
    return done if done.epochs >= run.config.total_epochs else None


def train(
    cfg: TrainConfig,
    common: CommonOptions | None = None,
    *,
    ray_address: str | None = None,
    parent_run_id: str | None = None,
    mlflow_run_id: str | None = None,
    callbacks: Sequence[Any] = (),
    fault_hook: dict[str, Any] | None = None,
) -> TrainResult:
    """Train (or continue training) the run these options name; returns where it ended.

    A completed run of the same name is returned as it is; an interrupted one continues
    from its latest checkpoint. `fault_hook` is for the fault-tolerance tests (faults.py).
    """
    run = plan_run(
        cfg,
        common or CommonOptions(),
        parent_run_id=parent_run_id,
        mlflow_run_id=mlflow_run_id,
        ray_address=ray_address,
    )
    done = completed_result(run)
    client = MlflowClient(run.tracking_uri)
    if done is not None:
        client.set_terminated(run.mlflow_run_id, status="FINISHED")
        print(f"run {run.name} is complete: {_summary(done)}", flush=True)
        return done
    run = dataclasses.replace(run, fault_hook=fault_hook)
    workers = count(cfg.train.num_workers, "worker")
    device = "GPU" if run.use_gpu else f"{run.cpus_per_worker:g} CPU"
    decoded = decoded_train_bytes(run)
    in_memory = holds_in_memory(run, decoded_bytes=decoded)
    size = f"{decoded / 2**20:.0f} MB decoded"
    data = f"held in memory ({size})" if in_memory else f"streamed ({size})"
    print(
        f"training {run.name}: {workers} x {device}, {count(cfg.total_epochs, 'epoch')}, "
        f"train split {data}, run folder {run.folder.url}",
        flush=True,
    )
    try:
        result = build_trainer(run, in_memory=in_memory, callbacks=callbacks).fit()
    except BaseException:
        client.set_terminated(run.mlflow_run_id, status="FAILED")
        raise
    out = finish_run(run, result)
    print(f"run {run.name} done: {_summary(out)}", flush=True)
    return out


def _summary(result: TrainResult) -> str:
    best = {m.name: result.best_metrics.get(m.reported, float("nan")) for m in METRICS.values()}
    return (
        f"{count(result.epochs, 'epoch')}; best val L1 {best['l1']:.4f} "
        f"(PSNR {best['psnr']:.2f}, SSIM {best['ssim']:.3f}) at {result.best_checkpoint}; "
        f"MLflow run {result.mlflow_run_id}"
    )


# -- command line -----------------------------------------------------------------------

OPTION_GROUPS = (*TrainConfig.GROUPS, CommonOptions, RayOptions)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, *OPTION_GROUPS)


def run(args: argparse.Namespace) -> int:
    *groups, common, ray_opts = load_options(args, *OPTION_GROUPS)
    started = time.monotonic()
    try:
        train(TrainConfig.of(tuple(groups)), common, ray_address=ray_opts.ray_address)
    except RuntimeError as err:
        print(f"pix2pix train: {err}", file=sys.stderr)
        return 1
    print(f"pix2pix train: finished in {time.monotonic() - started:.0f} s", flush=True)
    return 0
