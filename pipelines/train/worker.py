"""`train_fn_per_worker`: what each Ray Train worker process runs.

    1. build the model on this worker's device; restore the run's latest checkpoint
       (after a failure or on a rerun), else --resume_from, else start fresh
    2. wrap G and D in DistributedDataParallel (gloo on CPU, NCCL on GPU)
    3. each epoch: this worker's shard of train, jittered anew (crop + flip, the same for
       A and B); validation; one report to Ray Train, with a checkpoint from rank 0
Rank 0 alone logs to MLflow and prints the progress line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
from torch.nn.parallel import DistributedDataParallel

from pipelines.common import checkpoints
from pipelines.common.names import CHECKPOINT_SCORE, epoch_dir
from pipelines.common.ray_runtime import quiet_ray_logs
from pipelines.common.storage import Location
from pipelines.train.epoch_log import EpochLogger, progress_line, sample_grid
from pipelines.train.faults import maybe_wait_to_be_killed
from pipelines.train.options import TrainOptions
from pipelines.train.upload import upload_at_low_priority
from pipelines.train.validation import (
    load_fid_features,
    mean_across_ranks,
    sum_across_ranks,
    validate,
)
from pix2pix_core import (
    DiscriminatorConfig,
    GeneratorConfig,
    Pix2Pix,
    TrainingConfig,
    paired_random_jitter,
    to_tensor,
)
from pix2pix_core.color import to_lightness_and_colour
from pix2pix_core.geometry import crops
from pix2pix_core.memory import retain_freed_memory
from pix2pix_core.precision import flush_denormals
from pix2pix_core.training import LOSS_NAMES

# Pairs held for local shuffling on each worker (on top of a random block order per epoch).
SHUFFLE_BUFFER = 64


@dataclass(frozen=True, kw_only=True)
class TrainJob:
    """Everything a worker needs, settled by the driver: the configs the model is built
    from, the loop's options, and where the run lives and is tracked."""

    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    training: TrainingConfig
    options: TrainOptions
    all_options: dict[str, Any]  # every option by flag name, recorded in each checkpoint
    run_name: str
    run_folder: str  # URL
    storage_options: dict[str, Any]
    dataset: dict[str, Any]  # url, fingerprint, load_size, preprocess, direction, dataset_mode
    tracking_uri: str
    mlflow_run_id: str
    val_pairs: Any  # ray.ObjectRef of the encoded val pairs
    fault_hook: dict[str, Any] | None = None

    @property
    def total_epochs(self) -> int:
        return self.training.n_epochs + self.training.n_epochs_decay

    @property
    def colorization(self) -> bool:
        return self.dataset.get("dataset_mode") == "colorization"


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's entry point: `config["job"]` is the run's `TrainJob`."""
    job: TrainJob = config["job"]
    opts = job.options
    quiet_ray_logs()
    retain_freed_memory()
    flush_denormals()  # this thread runs the steps; the threads torch starts inherit it
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    _setup_device(device, ctx.get_local_world_size())

    # 1. model and where it starts
    model = Pix2Pix(job.generator, job.discriminator, device, seed=opts.seed, training=job.training)
    start = restore(model, job, ray.train.get_checkpoint())
    done, step = int(start.get("epoch", 0)), int(start.get("step", 0))

    # 2. data parallelism
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model.parallelize(lambda m: DistributedDataParallel(m, device_ids=ids))

    # 3. epochs
    total = job.total_epochs
    logger = EpochLogger(job.tracking_uri, job.mlflow_run_id) if rank == 0 else None
    if logger:
        logger.tag_execution(model)
    if rank == 0 and start.get("from"):
        _say(f"resuming {job.run_name} after epoch {done} from {start['from']}")
    train_shard = ray.train.get_dataset_shard("train")
    val_pairs = ray.get(job.val_pairs)
    fid_features = load_fid_features(opts.fid_weights, job.storage_options, device)
    epoch_seconds: list[float] = []
    # What lr_policy plateau watches: the previous epoch's validation L1.
    previous = (start.get("metrics") or {}).get(CHECKPOINT_SCORE.reported)
    # The logger's exit waits for every epoch's registration and logging (or, on a failure,
    # drops what is pending).
    with logger or contextlib.nullcontext():
        for epoch in range(done + 1, total + 1):
            began = time.perf_counter()
            # The official order: the schedule steps at the start of the epoch it sets.
            model.step_schedulers(metric=previous)
            lr = model.current_lr  # the rate this epoch trains with
            losses, images, step = _train_epoch(
                model, train_shard, job, epoch=epoch, rank=rank, step=step
            )
            # Each rank's BatchNorm running statistics drift by its own last forward; give all
            # ranks rank 0's, so that validation and the checkpoint see the same model.
            model.sync_buffers()
            train_s = time.perf_counter() - began
            val, rows = validate(
                model,
                val_pairs,
                crop_size=opts.crop_size,
                preprocess=job.dataset["preprocess"],
                batch_size=opts.batch_size,
                eval_mode=opts.eval,
                rank=rank,
                world=world,
                grid_size=opts.grid_size,
                fid_features=fid_features,
                colorization=job.colorization,
            )
            metrics = {
                "epoch": epoch,
                "step": step,
                **mean_across_ranks(losses, device),
                **val,
                "images_per_s": sum_across_ranks(images, device) / max(train_s, 1e-9),
                "lr": lr,
                "resumed_from_epoch": done,
            }
            previous = val[CHECKPOINT_SCORE.reported]
            epoch_seconds.append(time.perf_counter() - began)
            _report(model, metrics, job, epoch=epoch, total=total, rank=rank)
            if logger is not None:
                eta = (total - epoch) * sum(epoch_seconds) / len(epoch_seconds)
                _say(progress_line(epoch, total, metrics, eta))
                logger.log_when_registered(epoch, metrics, sample_grid(rows))


def _train_epoch(
    model: Pix2Pix,
    shard,
    job: TrainJob,
    *,
    epoch: int,
    rank: int,
    step: int,
) -> tuple[dict[str, float], int, int]:
    """One pass over this worker's shard: (mean losses, images seen, step count)."""
    opts = job.options
    # Crops and flips differ per epoch and per rank, and replay identically after a restart.
    jitter = torch.Generator().manual_seed(opts.seed * 1_000_003 + epoch * 1_009 + rank)
    sums = dict.fromkeys(LOSS_NAMES, 0.0)
    batches = images = 0
    for batch in shard.iter_torch_batches(
        batch_size=opts.batch_size,
        device=model.device,
        local_shuffle_buffer_size=max(SHUFFLE_BUFFER, opts.batch_size),
        local_shuffle_seed=opts.seed * 1_000_003 + epoch * 1_009 + rank,
        prefetch_batches=2,
    ):
        real_a, real_b = paired_random_jitter(
            to_tensor(batch["a"]),
            to_tensor(batch["b"]),
            opts.crop_size if crops(job.dataset["preprocess"]) else None,
            flip=not opts.no_flip,
            generator=jitter,
        )
        if job.colorization:  # the official order: the RGB picture jittered, then to Lab
            real_a, real_b = to_lightness_and_colour(real_a)
        for name, value in model.train_step(real_a, real_b).items():
            sums[name] += value
        batches += 1
        images += real_a.shape[0]
        step += 1
        if batches == 1:
            maybe_wait_to_be_killed(job.fault_hook, epoch=epoch, rank=rank)
    return {k: v / max(batches, 1) for k, v in sums.items()}, images, step


def _report(
    model: Pix2Pix,
    metrics: dict[str, Any],
    job: TrainJob,
    *,
    epoch: int,
    total: int,
    rank: int,
) -> None:
    """Report the epoch to Ray Train (every rank: it is a barrier); rank 0 adds a checkpoint."""
    opts = job.options
    due = epoch % opts.save_epoch_freq == 0 or epoch == total
    if rank != 0 or not due:
        ray.train.report(metrics)
        return
    extra = {
        "epoch": epoch,
        "step": metrics["step"],
        "metrics": {k: v for k, v in metrics.items() if k not in ("epoch", "step")},
        "run_name": job.run_name,
        "dataset": job.dataset["url"],
        "dataset_fingerprint": job.dataset["fingerprint"],
        "direction": job.dataset["direction"],
        "dataset_mode": job.dataset["dataset_mode"],
        "crop_size": opts.crop_size,
        "load_size": job.dataset["load_size"],
        "preprocess": job.dataset["preprocess"],
        "eval_mode": opts.eval,
        "options": job.all_options,
    }
    # Written to local disk, uploaded in the background at the lowest CPU priority while
    # the next epoch trains (Ray deletes the folder once uploaded). Ray registers a
    # checkpoint only once it is whole in storage, so resume never finds a half-written one.
    directory = tempfile.mkdtemp(prefix="pix2pix-checkpoint-")
    checkpoints.write(directory, model, extra)
    ray.train.report(
        metrics,
        checkpoint=ray.train.Checkpoint.from_directory(directory),
        checkpoint_dir_name=epoch_dir(epoch),
        checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
        checkpoint_upload_fn=lambda checkpoint, name: _upload(checkpoint, name, job),
    )


def _upload(checkpoint: ray.train.Checkpoint, name: str, job: TrainJob) -> ray.train.Checkpoint:
    """Ray Train's upload step for one checkpoint folder: the copy yields to the step."""
    upload_at_low_priority(
        checkpoint.path, Location(job.run_folder, job.storage_options).join(name)
    )
    storage = ray.train.get_context().get_storage()  # where Ray itself would have put it
    return ray.train.Checkpoint(
        storage.build_checkpoint_path_from_name(name), storage.storage_filesystem
    )


def restore(model: Pix2Pix, job: TrainJob, own) -> dict[str, Any]:
    """Load the state this run continues from: `own` (the run's latest Ray Train checkpoint,
    after a failure or on a rerun), else --resume_from. Returns the checkpoint's extra
    (epoch, step, ...) and where it came from; {} for a fresh start."""
    if own is not None:
        data, where = checkpoints.read_ray_checkpoint(own), job.run_folder
    elif job.options.resume_from:
        where = job.options.resume_from
        data = checkpoints.read_url(where, job.storage_options)
    else:
        return {}
    extra = checkpoints.restore(model, data, where)
    if own is not None:
        where = f"{job.run_folder}/{epoch_dir(int(extra.get('epoch', 0)))}"
    return {**extra, "from": where}


def _setup_device(device: torch.device, local_workers: int) -> None:
    """Pin the GPU; or share this node's cores among its workers (Ray's CPU reservation is
    only a count)."""
    if device.type == "cuda":
        # Object collectives under NCCL (the sample grid) use the current device.
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed image sizes: pick the fastest kernels
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(local_workers, 1)))


def _say(line: str) -> None:
    # Not print(): Ray Train copies printed lines into its own log, so each would show twice.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
