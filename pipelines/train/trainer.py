"""The Ray Train `TorchTrainer` of a planned run: the same for `pix2pix train`, each Tune
trial and the retrain workflow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from pipelines.common.dataset import (
    Channels,
    dataset_mode,
    decoded_channels,
    prepared_preprocess,
    read_encoded_pairs,
    read_prepared,
    stored_train_sizes,
)
from pipelines.common.names import CHECKPOINT_SCORE
from pipelines.train.plan import TrainRun
from pipelines.train.worker import TrainJob, train_fn_per_worker


def worker_job(run: TrainRun) -> TrainJob:
    """The job description every worker receives (it travels pickled, no live objects)."""
    cfg = run.config
    return TrainJob(
        generator=cfg.generator_config(),
        discriminator=cfg.discriminator_config(),
        training=cfg.training_config(),
        options=cfg.train,
        all_options=cfg.flat(),
        run_name=run.name,
        run_folder=run.folder.url,
        storage_options=dict(run.folder.options),
        dataset={
            "url": run.data.url,
            "fingerprint": run.fingerprint,
            "load_size": run.dataset.get("load_size"),
            "preprocess": prepared_preprocess(run.dataset),
            "direction": run.dataset.get("direction"),
            "dataset_mode": dataset_mode(run.dataset),
        },
        tracking_uri=run.tracking_uri,
        mlflow_run_id=run.mlflow_run_id,
        val_pairs=ray.put(read_encoded_pairs(run.data, "val", cfg.train.num_val)),
        fault_hook=run.fault_hook,
    )


def build_trainer(run: TrainRun, *, in_memory: bool, callbacks: Sequence[Any] = ()) -> TorchTrainer:
    """The TorchTrainer of `run`, its train split held in memory or streamed as the caller
    decided (`holds_in_memory`). `callbacks` are Ray Train `UserCallback`s (Tune passes its
    `TuneReportCallback`, which forwards every epoch's report to the trial)."""
    opts = run.config.train
    return TorchTrainer(
        train_fn_per_worker,
        train_loop_config={"job": worker_job(run)},
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
                checkpoint_score_attribute=CHECKPOINT_SCORE.reported,
                checkpoint_score_order=CHECKPOINT_SCORE.mode,
            ),
            callbacks=list(callbacks),
            # Ray Train's per-report INFO lines would bury the one progress line per epoch.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
        datasets={"train": train_dataset(run, in_memory=in_memory)},
    )


# The train split is held in Ray's object store, decoded, when it needs at most this share
# of the cluster's object store memory (Ray Data's advice for a dataset that fits): each
# epoch then starts from memory. Streamed instead, each epoch reads and decodes it from
# storage again, and its first batch waits on the store (seconds, where the store is busy
# taking the previous epoch's checkpoint).
IN_MEMORY_SHARE = 0.25


def train_dataset(run: TrainRun, *, in_memory: bool):  # -> ray.data.Dataset
    """The train split as the workers iterate it: A and B decoded, a new random block order
    each epoch (workers shuffle locally on top of it); held in the object store if
    `in_memory`."""
    train_ds = read_prepared(run.data, "train", channels=train_channels(run))
    train_ds = train_ds.select_columns(["a", "b"])
    # The epoch line is the progress display: Ray Data's bars, redrawn by each worker's
    # split of every epoch, and its "Starting execution ... Execution plan ..." lines,
    # printed for every epoch, would bury it.
    train_ds.context.enable_progress_bars = False
    train_ds.context.print_on_execution_start = False
    if in_memory:
        train_ds = train_ds.materialize()
    return train_ds.randomize_block_order()


def train_channels(run: TrainRun) -> Channels:
    generator = run.config.generator_config()
    colorization = dataset_mode(run.dataset) == "colorization"
    return decoded_channels(generator.input_nc, generator.output_nc, colorization)


def decoded_train_bytes(run: TrainRun) -> int:
    """The train split's size decoded (uint8 A and B), at most: its largest stored image
    size for every pair where the sizes differ (--preprocess other than resize_and_crop)."""
    info = run.dataset
    if prepared_preprocess(info) == "resize_and_crop":
        pixels = int(info["width"]) * int(info["height"])
    else:
        pixels = max(w * h for w, h in stored_train_sizes(run.data))
    return int(info["counts"]["train"]) * pixels * sum(train_channels(run))


def holds_in_memory(
    run: TrainRun, memory_share: float | None = None, *, decoded_bytes: int | None = None
) -> bool:
    """Whether the decoded train split (`decoded_bytes`, if the caller has it) fits in
    `memory_share` (IN_MEMORY_SHARE unless given) of the cluster's object store memory."""
    share = IN_MEMORY_SHARE if memory_share is None else memory_share
    size = decoded_train_bytes(run) if decoded_bytes is None else decoded_bytes
    return size <= share * ray.cluster_resources().get("object_store_memory", 0)
