"""`pix2pix train`: the driver that builds a Ray Train `TorchTrainer` and fits it.

    run = plan_run(model, opts, common)          # name, run folder, MLflow run: driver only
    trainer = build_trainer(run, callbacks=...)  # the TorchTrainer every caller shares
    result = finish_run(run, trainer.fit())      # TrainResult, result.json, MLflow status

`train()` does the three; `pix2pix tune` builds the same trainer inside each trial (with
Ray Tune's `TuneReportCallback` and `parent_run_id`), the retrain workflow calls `train()`.

The run folder is `STORAGE_PATH/RUN_NAME` (Ray Train's own run folder):

    run.json                         settings, dataset fingerprint, MLflow run id
    checkpoint_manager_snapshot.json Ray Train's record of checkpoints (what a rerun resumes)
    epoch_0001/ ...                  checkpoints (pipelines.common.checkpoints), best K + latest
    result.json                      written when the run completes; a rerun returns it

Run names are derived from the settings and the dataset fingerprint unless given, so
rerunning the same command continues the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.common.dataset import read_info, read_prepared
from pipelines.common.errors import UserError
from pipelines.common.ray_runtime import init_ray
from pipelines.common.storage import Location
from pipelines.common.text import count
from pipelines.common.tracking import git_commit, resolve_tracking_uri, setup_mlflow
from pipelines.config.options import (
    CommonOptions,
    ModelOptions,
    RayOptions,
    add_options,
    load_options,
    options_dict,
)
from pipelines.train.options import EXECUTION_ONLY, TrainOptions

RUN_FILE = "run.json"
RESULT_FILE = "result.json"
SCORE_METRIC = "val_L1"  # what "best checkpoint" means: lowest validation L1
# Model options that change speed, not the maths: free to differ on resume.
MODEL_EXECUTION_ONLY = frozenset({"channels_last", "autocast", "compile"})


@dataclass(frozen=True, kw_only=True)
class TrainRun:
    """What the driver settles before any worker starts."""

    name: str
    storage: Location  # STORAGE_PATH
    folder: Location  # STORAGE_PATH/RUN_NAME
    data: Location
    dataset: dict[str, Any]  # dataset.json of the prepared data
    model: ModelOptions
    options: TrainOptions
    tracking_uri: str
    experiment_id: str
    mlflow_run_id: str
    use_gpu: bool
    cpus_per_worker: float
    fault_hook: dict[str, Any] | None = None  # tests: see train_faults.py


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


# --------------------------------------------------------------------------------------
# 1. plan: name, folder, dataset checks, MLflow run
# --------------------------------------------------------------------------------------


def identity(model: ModelOptions, opts: TrainOptions, fingerprint: str) -> dict[str, Any]:
    """The settings that define what a run learns (its name derives from these)."""
    settings = {k: v for k, v in dataclasses.asdict(model).items() if k not in MODEL_EXECUTION_ONLY}
    settings |= {
        k: v for k, v in dataclasses.asdict(opts).items() if k not in EXECUTION_ONLY | {"data"}
    }
    return {"settings": settings, "dataset_fingerprint": fingerprint}


def derive_run_name(
    data: Location, model: ModelOptions, opts: TrainOptions, fingerprint: str
) -> str:
    """`<dataset name>-<8 hex>`: the same settings on the same data give the same name."""
    text = json.dumps(identity(model, opts, fingerprint), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", data.name).strip("-") or "pix2pix"
    return f"{stem}-{digest}"


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(
            f"--run_name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)"
        )
    return name


def check_data(model: ModelOptions, opts: TrainOptions, dataset: dict[str, Any], data: Location):
    """Stop with a message if the prepared `dataset` cannot train these settings."""
    counts = dataset.get("counts", {})
    for split in ("train", "val"):
        if not counts.get(split):
            raise UserError(
                f"{data.url} has no {split} pairs (counts: {counts}); training needs both "
                "(prepare carves val from train with --val_fraction)"
            )
    load_size = int(dataset.get("load_size") or 0)
    if load_size and opts.crop_size > load_size:
        raise UserError(
            f"--crop_size {opts.crop_size} is larger than the prepared images of {data.url} "
            f"({load_size} px); prepare with --load_size >= {opts.crop_size}"
        )
    depth = model.generator_config().depth
    if opts.crop_size % 2**depth:
        raise UserError(
            f"--crop_size {opts.crop_size} must be divisible by 2^{depth} = {2**depth} "
            f"for the U-Net of depth {depth} ({model.netG}, num_downs {model.num_downs})"
        )
    check_discriminator(model, opts)


def check_discriminator(model: ModelOptions, opts: TrainOptions) -> None:
    """The PatchGAN must fit the crops: its convolutions need room, and each normalised
    layer more than one value per channel. Run on shapes alone (the meta device)."""
    import torch

    from pix2pix_core import build_discriminator

    cfg = model.discriminator_config()
    try:
        with torch.device("meta"):
            net = build_discriminator(cfg)
            size = (opts.batch_size, cfg.input_nc, opts.crop_size, opts.crop_size)
            net(torch.empty(size))
    except (RuntimeError, ValueError) as err:
        raise UserError(
            f"--crop_size {opts.crop_size} is too small for the {cfg.receptive_field}x"
            f"{cfg.receptive_field} PatchGAN ({cfg.layers} layers) at --batch_size "
            f"{opts.batch_size}: {str(err).splitlines()[0]}"
        ) from None


def _absolute(url: str | None, storage_options: dict[str, Any], flag: str) -> str | None:
    if not url:
        return None
    loc = Location.parse(url, storage_options)
    if not loc.exists():
        raise UserError(f"{flag} {url}: not found")
    return loc.url


def _resume_checkpoint(url: str | None, storage_options: dict[str, Any]) -> str | None:
    """--resume_from's checkpoint.pt as an absolute URL, which exists."""
    if not url:
        return None
    from pipelines.common.checkpoints import checkpoint_file

    try:
        return checkpoint_file(url, storage_options).url
    except UserError as err:
        raise UserError(f"--resume_from {url}: {err}") from None


def _check_resumable(previous: dict[str, Any], current: dict[str, Any], folder: Location):
    """A rerun must train the same thing it resumes; name what changed otherwise."""
    old, new = previous.get("identity", {}), current
    if old.get("dataset_fingerprint") != new["dataset_fingerprint"]:
        raise UserError(
            f"run {folder.url} was trained on other data (fingerprint "
            f"{old.get('dataset_fingerprint')} vs {new['dataset_fingerprint']}); "
            "choose another --run_name"
        )
    changed = [
        f"{k}: {old.get('settings', {}).get(k)!r} -> {v!r}"
        for k, v in new["settings"].items()
        if old.get("settings", {}).get(k) != v
    ]
    if changed:
        raise UserError(
            f"run {folder.url} exists with other settings ({'; '.join(changed)}); "
            "rerun with its settings to resume it, or choose another --run_name"
        )


def worker_resources(opts: TrainOptions) -> tuple[bool, float]:
    """GPU per worker when the cluster has enough of them; a CPU share that fits a laptop.

    Workers take a fractional CPU by default: on a 2-core machine whole CPUs for the
    workers leave Ray Data none, and training waits forever for its input. The share is
    a scheduling reservation; each worker sizes its torch threads to the cores it has.
    """
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    use_gpu = opts.use_gpu
    if use_gpu is None:
        use_gpu = gpus >= opts.num_workers
    elif use_gpu and gpus < opts.num_workers:
        # Ray Train waits for them without a word: an autoscaling cluster adds GPU nodes,
        # a local Ray never will.
        print(
            f"--use_gpu: waiting for {count(opts.num_workers, 'GPU')}, the cluster has "
            f"{gpus:g} now (an autoscaling cluster adds GPU nodes; on this machine alone, stop "
            "with Ctrl-C and drop --use_gpu)",
            file=sys.stderr,
            flush=True,
        )
    cpus = opts.cpus_per_worker or (1.0 if use_gpu else 0.5)
    return bool(use_gpu), float(cpus)


def _mlflow_run(
    name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    *,
    tracking_uri: str,
    experiment: str,
    previous_run_id: str | None,
    parent_run_id: str | None,
) -> tuple[str, str]:
    """(experiment id, run id): the previous run of this name if it exists, else a new one."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    experiment_id = setup_mlflow(tracking_uri, experiment)
    client = MlflowClient(tracking_uri)
    if previous_run_id:
        try:
            client.get_run(previous_run_id)
            client.update_run(previous_run_id, status="RUNNING")
            return experiment_id, previous_run_id
        except MlflowException:
            pass  # another tracking store than last time: start a run there
    if parent_run_id:
        tags = {**tags, MLFLOW_PARENT_RUN_ID: parent_run_id}
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    client.log_batch(
        run.info.run_id,
        params=[_param(k, v) for k, v in sorted(params.items())],
    )
    return experiment_id, run.info.run_id


def _param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))


def plan_run(
    model: ModelOptions,
    opts: TrainOptions,
    common: CommonOptions,
    *,
    parent_run_id: str | None = None,
    mlflow_run_id: str | None = None,
    ray_address: str | None = None,
) -> TrainRun:
    """Check the settings and the data, name the run, and open its MLflow run (driver only).

    `parent_run_id` nests the run under it (a Tune trial under the sweep's run);
    `mlflow_run_id` logs into an existing run instead of creating one.
    """
    model.validate()
    if not opts.data:
        raise UserError("--data is required: the prepared dataset (DST of `pix2pix prepare`)")
    data = Location.parse(opts.data, common.storage_options)
    dataset = read_info(data)
    # Workers run in other directories: every URL they read must be absolute.
    opts = dataclasses.replace(
        opts,
        data=data.url,
        fid_weights=_absolute(opts.fid_weights, common.storage_options, "--fid_weights"),
    )
    check_data(model, opts, dataset, data)
    # After the cheap checks: reading a checkpoint takes torch.
    opts = dataclasses.replace(
        opts, resume_from=_resume_checkpoint(opts.resume_from, common.storage_options)
    )
    fingerprint = str(dataset.get("fingerprint", ""))
    name = _check_name(common.run_name or derive_run_name(data, model, opts, fingerprint))
    storage = Location.parse(common.storage_path, common.storage_options)
    folder = storage.join(name)
    init_ray(ray_address)
    use_gpu, cpus = worker_resources(opts)
    from pix2pix_core.training import sync_batch_norm_runs_on  # torch: after the cheap checks

    device_type = "cuda" if use_gpu else "cpu"
    if (
        model.norm == "syncbatch"
        and opts.num_workers > 1
        and not sync_batch_norm_runs_on(device_type)
    ):
        raise UserError(
            "--norm syncbatch needs GPUs with several workers; on CPUs use --norm batch "
            "(each worker's own statistics)"
        )

    current = identity(model, opts, fingerprint)
    run_file = folder.join(RUN_FILE)
    previous = run_file.read_json() if run_file.exists() else None
    if previous is not None:
        _check_resumable(previous, current, folder)

    tracking_uri = resolve_tracking_uri(common.tracking_uri)
    params = options_dict(model, opts) | {"run_name": name, "storage_path": common.storage_path}
    tags = {
        "pix2pix.dataset": data.url,
        "pix2pix.dataset_fingerprint": fingerprint,
        "pix2pix.run_folder": folder.url,
        "git_commit": git_commit() or "unknown",
    }
    experiment_id, run_id = _mlflow_run(
        name,
        params,
        tags,
        tracking_uri=tracking_uri,
        experiment=common.experiment,
        previous_run_id=mlflow_run_id or (previous or {}).get("mlflow_run_id"),
        parent_run_id=parent_run_id,
    )
    folder.makedirs()
    run_file.write_json(
        {
            "run_name": name,
            "dataset": data.url,
            "identity": current,
            "options": {"model": dataclasses.asdict(model), "train": dataclasses.asdict(opts)},
            "mlflow_run_id": run_id,
            "experiment_id": experiment_id,
            "tracking_uri": tracking_uri,
            "git_commit": git_commit(),
        }
    )
    return TrainRun(
        name=name,
        storage=storage,
        folder=folder,
        data=data,
        dataset=dataset,
        model=model,
        options=opts,
        tracking_uri=tracking_uri,
        experiment_id=experiment_id,
        mlflow_run_id=run_id,
        use_gpu=use_gpu,
        cpus_per_worker=cpus,
    )


# --------------------------------------------------------------------------------------
# 2. the trainer
# --------------------------------------------------------------------------------------


def worker_config(run: TrainRun) -> dict[str, Any]:
    """The plain dict `train_fn_per_worker` receives (picklable, no live objects)."""
    return {
        "model": dataclasses.asdict(run.model),
        "options": dataclasses.asdict(run.options),
        "storage_options": dict(run.folder.options),
        "run_name": run.name,
        "run_folder": run.folder.url,
        "dataset": {
            "url": run.data.url,
            "fingerprint": run.dataset.get("fingerprint", ""),
            "load_size": run.dataset.get("load_size"),
            "direction": run.dataset.get("direction"),
        },
        "mlflow": {"tracking_uri": run.tracking_uri, "run_id": run.mlflow_run_id},
        "fault_hook": run.fault_hook,
    }


def build_trainer(run: TrainRun, *, callbacks: Sequence[Any] = ()):  # -> TorchTrainer
    """The TorchTrainer of `run`: the same for `pix2pix train`, each Tune trial and retrain.

    `callbacks` are Ray Train `UserCallback`s (Tune passes its `TuneReportCallback`, which
    forwards every epoch's report to the trial).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipelines.train.validation import read_val_pairs
    from pipelines.train.worker import train_fn_per_worker

    opts = run.options
    # A new random block order each epoch; workers shuffle locally on top of it.
    train_ds = read_prepared(run.data, "train").select_columns(["a", "b"]).randomize_block_order()
    # The epoch line is the progress display: Ray Data's bars, redrawn by each worker's
    # split of every epoch, and its "Starting execution ... Execution plan ..." lines,
    # printed for every epoch, would bury it.
    train_ds.context.enable_progress_bars = False
    train_ds.context.print_on_execution_start = False
    config = worker_config(run)
    config["val_pairs"] = ray.put(read_val_pairs(run.data, opts.num_val))
    return TorchTrainer(
        train_fn_per_worker,
        train_loop_config=config,
        torch_config=TorchConfig(backend="nccl" if run.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=opts.num_workers,
            use_gpu=run.use_gpu,
            resources_per_worker={"CPU": run.cpus_per_worker} | ({"GPU": 1} if run.use_gpu else {}),
        ),
        run_config=RunConfig(
            name=run.name,
            storage_path=run.storage.path,
            storage_filesystem=run.storage.arrow_fs,
            failure_config=FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=opts.keep_best,
                checkpoint_score_attribute=SCORE_METRIC,
                checkpoint_score_order="min",
            ),
            callbacks=list(callbacks),
            # Ray Train's per-report INFO lines would bury the one progress line per epoch.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
        datasets={"train": train_ds},
    )


# --------------------------------------------------------------------------------------
# 3. finish: the result, written next to the checkpoints
# --------------------------------------------------------------------------------------


def _checkpoint_url(run: TrainRun, checkpoint) -> str:
    return run.folder.join(checkpoint.path.rstrip("/").rsplit("/", 1)[-1]).url


def finish_run(run: TrainRun, result) -> TrainResult:  # result: ray.train.Result
    """Turn `trainer.fit()`'s result into a TrainResult; record it in storage and MLflow."""
    from mlflow import MlflowClient

    client = MlflowClient(run.tracking_uri)
    if result.error is not None or result.checkpoint is None:
        client.set_terminated(run.mlflow_run_id, status="FAILED")
        reason = result.error or "no checkpoint was reported"
        raise RuntimeError(f"training run {run.name} failed: {reason}")
    scored = [(c, m) for c, m in (result.best_checkpoints or []) if SCORE_METRIC in m]
    best, best_metrics = min(scored, key=lambda cm: cm[1][SCORE_METRIC])
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
    run.folder.join(RESULT_FILE).write_json(out.to_dict())
    client.set_tag(run.mlflow_run_id, "pix2pix.best_checkpoint", out.best_checkpoint)
    client.set_terminated(run.mlflow_run_id, status="FINISHED")
    return out


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def completed_result(run: TrainRun) -> TrainResult | None:
    """The result of an earlier, completed run of this name, if there is one."""
    loc = run.folder.join(RESULT_FILE)
    if not loc.exists():
        return None
    done = TrainResult.from_dict(loc.read_json())
    return done if done.epochs >= run.model.total_epochs else None


def train(
    model: ModelOptions,
    opts: TrainOptions,
    common: CommonOptions,
    *,
    parent_run_id: str | None = None,
    mlflow_run_id: str | None = None,
    callbacks: Sequence[Any] = (),
    ray_address: str | None = None,
    fault_hook: dict[str, Any] | None = None,
) -> TrainResult:
    """Train (or continue training) the run these options name; returns where it ended.

    A completed run of the same name is returned as it is; an interrupted one continues
    from its latest checkpoint.
    """
    run = plan_run(
        model,
        opts,
        common,
        parent_run_id=parent_run_id,
        mlflow_run_id=mlflow_run_id,
        ray_address=ray_address,
    )
    done = completed_result(run)
    if done is not None:
        from mlflow import MlflowClient

        MlflowClient(run.tracking_uri).set_terminated(run.mlflow_run_id, status="FINISHED")
        print(f"run {run.name} is complete: {_summary(done)}", flush=True)
        return done
    if fault_hook is not None:
        run = dataclasses.replace(run, fault_hook=fault_hook)
    workers = count(opts.num_workers, "worker")
    device = "GPU" if run.use_gpu else f"{run.cpus_per_worker:g} CPU"
    print(
        f"training {run.name}: {workers} x {device}, {count(model.total_epochs, 'epoch')}, "
        f"run folder {run.folder.url}",
        flush=True,
    )
    try:
        result = build_trainer(run, callbacks=callbacks).fit()
    except BaseException:
        from mlflow import MlflowClient

        MlflowClient(run.tracking_uri).set_terminated(run.mlflow_run_id, status="FAILED")
        raise
    out = finish_run(run, result)
    print(f"run {run.name} done: {_summary(out)}", flush=True)
    return out


def _summary(result: TrainResult) -> str:
    best = {k: result.best_metrics.get(k, float("nan")) for k in ("val_L1", "val_PSNR", "val_SSIM")}
    return (
        f"{count(result.epochs, 'epoch')}; best val L1 {best['val_L1']:.4f} "
        f"(PSNR {best['val_PSNR']:.2f}, SSIM {best['val_SSIM']:.3f}) at {result.best_checkpoint}; "
        f"MLflow run {result.mlflow_run_id}"
    )


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, TrainOptions, ModelOptions, CommonOptions, RayOptions)


def run(args: argparse.Namespace) -> int:
    opts, model, common, ray_opts = load_options(
        args, TrainOptions, ModelOptions, CommonOptions, RayOptions
    )
    started = time.monotonic()
    try:
        train(model, opts, common, ray_address=ray_opts.ray_address)
    except RuntimeError as err:
        print(f"pix2pix train: {err}", file=sys.stderr)
        return 1
    print(f"pix2pix train: finished in {time.monotonic() - started:.0f} s", flush=True)
    return 0
