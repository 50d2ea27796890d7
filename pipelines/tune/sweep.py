"""`pix2pix tune`: a Ray Tune sweep whose trials are `pix2pix train` runs.

    result = tune(cfg, sweep, common)   # TuneResult: best config, checkpoint, run

Ray Train V2's pattern: the Tuner runs `pix2pix_trial` once per configuration; each trial
builds the same `TorchTrainer` as `pix2pix train` (`pipelines.train.trainer`) with
`TuneReportCallback`, so every epoch's validation metrics reach Tune and ASHA, and a trial
can itself be multi-worker and multi-GPU. The sweep folder is `STORAGE_PATH/SWEEP_NAME`:

    sweep.json               settings, MLflow parent run id (what a rerun checks and reuses)
    tuner.pkl, experiment_state-*.json, <trial dirs>   Ray Tune's own state (Tuner.restore)
    train/trial-<id>/        each trial's training run (run.json, epoch_NNNN checkpoints)

MLflow: the sweep is one parent run; each trial is a child run (created by the trial's
training run). At the end the parent holds results.csv, the best trial's options as
best_config.yaml (a `--config` for `pix2pix train`), its validation metrics, the tag
`checkpoint_best`, and the best generator as a pyfunc model (its URI in the tag
`pix2pix.model_uri`).

Rerunning the same sweep name continues it with `Tuner.restore`: finished trials are kept,
interrupted ones resume from their latest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
from typing import Any

import ray.tune
from ray import tune as ray_tune
from ray.tune.integration.ray_train import TuneReportCallback

from pipelines.common.cluster import require_shared
from pipelines.common.dataset import read_info
from pipelines.common.ray_runtime import init_ray
from pipelines.common.storage import Location
from pipelines.common.text import count
from pipelines.common.tracking import resolve_tracking_uri
from pipelines.config.groups import CommonOptions, RayOptions
from pipelines.config.loader import add_options, load_options
from pipelines.train.driver import completed_result, finish_run
from pipelines.train.options import TrainConfig
from pipelines.train.plan import (
    check_run_name,
    data_location,
    dataset_channels,
    plan_run,
    worker_resources,
)
from pipelines.train.trainer import IN_MEMORY_SHARE, build_trainer, holds_in_memory
from pipelines.tune.options import TuneOptions
from pipelines.tune.plan import SweepPlan, TuneResult, max_epochs, trial_dir_name
from pipelines.tune.results import open_parent_run, summarise
from pipelines.tune.search import (
    TRIAL_DRIVER_CPUS,
    baseline_point,
    check_trials_fit,
    default_concurrency,
    early_stopping,
    load_space,
    search_algorithm,
)
from pipelines.tune.space import SearchSpace

# -- 1. the trial: one training run, reporting every epoch to Tune ----------------------


def pix2pix_trial(config: dict[str, Any], plan: SweepPlan) -> None:
    """Train one configuration with the same TorchTrainer as `pix2pix train`."""
    trial_id = ray.tune.get_context().get_trial_id()
    common = dataclasses.replace(
        plan.common,
        storage_path=plan.trials_folder.url,
        run_name=plan.trial_run_name(trial_id),
    )
    # The run folder and MLflow run are named by the trial id, which Tune keeps across a
    # restore: an interrupted trial finds its run again and resumes from its checkpoint.
    run = plan_run(plan.trial_config(config), common, parent_run_id=plan.parent_run_id)
    print(f"trial {trial_id}: training run {run.name}, MLflow run {run.mlflow_run_id}", flush=True)
    done = completed_result(run)
    if done is not None:
        # Trained to the end before the sweep was interrupted: hand Tune the result again.
        ray.tune.report(
            {**done.best_metrics, "epoch": done.epochs, "checkpoint_path": done.best_checkpoint}
        )
        return
    # The trials running at once share the object store: each may hold its split in its
    # share of the train run's.
    in_memory = holds_in_memory(run, IN_MEMORY_SHARE / max(plan.concurrency, 1))
    trainer = build_trainer(run, in_memory=in_memory, callbacks=[TuneReportCallback()])
    finish_run(run, trainer.fit())


# -- 2. the sweep ----------------------------------------------------------------------


def sweep_name(common: CommonOptions, data: Location) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", data.name) or "data"
    return check_run_name(common.run_name or f"tune-{stem}")


def check_sweep(
    cfg: TrainConfig, sweep: TuneOptions, common: CommonOptions
) -> tuple[TrainConfig, Location, SearchSpace]:
    """What a trial would reject, checked once before anything starts: the settings, the
    data, the search space and every trial it can sample. Returns the sweep's settings as
    its trials train them (the data's URL, what the space fixes, the channels the data
    makes: colorization's L -> ab), the data, and the space."""
    cfg.validate()
    data = data_location(cfg, common.storage_options)
    cfg = cfg.replace(data=data.url)  # trials run in other directories
    space = load_space(sweep, cfg)
    cfg = cfg.replace(**space.fixed)  # what the space fixes is the sweep's own setting
    dataset = read_info(data)
    cfg = dataset_channels(cfg, dataset, data)
    check_trials_fit(cfg, space, dataset, data)
    return cfg, data, space


def tune(
    cfg: TrainConfig,
    sweep: TuneOptions,
    common: CommonOptions | None = None,
    *,
    ray_address: str | None = None,
    parent_run_id: str | None = None,
) -> TuneResult:
    """Run (or continue) the sweep these options name; returns its best trial.

    Rerunning with the same sweep name (`common.run_name`, default `tune-<dataset>`)
    continues an interrupted sweep without repeating finished trials, and returns the
    result of a finished one. `parent_run_id` nests the sweep's MLflow run under another
    (a retrain run).
    """
    common = common or CommonOptions()
    # 1. check everything a trial would reject before anything starts
    cfg, data, space = check_sweep(cfg, sweep, common)
    name = sweep_name(common, data)
    require_shared(cfg.flat() | dataclasses.asdict(common), ray_address)
    storage = Location.parse(common.storage_path, common.storage_options)
    storage.check_access("--storage_path", write=True)
    folder = storage.join(name)
    common = dataclasses.replace(
        common, storage_path=storage.url, tracking_uri=resolve_tracking_uri(common.tracking_uri)
    )
    init_ray(ray_address)
    use_gpu, cpus_per_worker = worker_resources(cfg.train)
    concurrency = sweep.max_concurrent_trials or default_concurrency(
        cfg.train, use_gpu, cpus_per_worker
    )
    search_alg = search_algorithm(
        sweep, space, cfg.train.seed, baseline_point(space, cfg), concurrency
    )

    # 2. the MLflow parent run (the same one when a sweep continues)
    plan = SweepPlan(
        name=name,
        folder=folder,
        config=cfg,
        common=common,
        space=space,
        sweep=sweep,
        parent_run_id="",
        concurrency=concurrency,
    )
    plan = dataclasses.replace(
        plan, parent_run_id=open_parent_run(plan, data, parent_run_id=parent_run_id)
    )

    # 3. the Tuner, new or restored
    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(pix2pix_trial, plan=plan), {"CPU": TRIAL_DRIVER_CPUS}
    )
    if ray_tune.Tuner.can_restore(folder.path, storage_filesystem=folder.arrow_fs):
        print(f"continuing sweep {name} from {folder.url}", flush=True)
        tuner = ray_tune.Tuner.restore(
            folder.path,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=folder.arrow_fs,
        )
    else:
        epochs = max_epochs(space, cfg)
        scheduler = early_stopping(sweep, epochs)
        score = plan.score
        stopping = (
            f"ASHA on {score.reported} after {count(sweep.grace_period, 'epoch')}"
            if scheduler
            else f"no early stopping (--grace_period {sweep.grace_period}, "
            f"{count(epochs, 'epoch')})"
        )
        print(
            f"sweep {name}: {count(sweep.num_samples, 'trial')} of {', '.join(space.names)} "
            f"({sweep.search_alg} search), at most {concurrency} at once, {stopping}; "
            f"folder {folder.url}",
            flush=True,
        )
        tuner = ray_tune.Tuner(
            trainable,
            param_space=space.param_space(),
            tune_config=ray_tune.TuneConfig(
                metric=score.reported,
                mode=score.mode,
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=sweep.num_samples,
                max_concurrent_trials=concurrency if sweep.search_alg != "random" else None,
                trial_dirname_creator=trial_dir_name,
            ),
            run_config=ray_tune.RunConfig(
                name=name,
                storage_path=storage.path,
                storage_filesystem=storage.arrow_fs,
                # A trial whose driver was on a lost node starts again, and its training
                # run resumes from its latest checkpoint (pix2pix_trial).
                failure_config=ray_tune.FailureConfig(max_failures=cfg.train.max_failures),
            ),
        )
    results = tuner.fit()

    # 4. the results table, the best trial and its model, in MLflow
    return summarise(plan, results)


# -- command line -----------------------------------------------------------------------

OPTION_GROUPS = (TuneOptions, *TrainConfig.GROUPS, CommonOptions, RayOptions)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, *OPTION_GROUPS)


def run(args: argparse.Namespace) -> int:
    sweep, *groups, common, ray_opts = load_options(args, *OPTION_GROUPS)
    started = time.monotonic()
    result = tune(TrainConfig.of(tuple(groups)), sweep, common, ray_address=ray_opts.ray_address)
    best = ", ".join(f"{k}={v!r}" for k, v in result.best_config.items())
    print(
        f"pix2pix tune: {count(result.num_trials, 'trial')} in {time.monotonic() - started:.0f} s; "
        f"best {result.metric} {result.best_metrics.get(result.metric, float('nan')):.4f} "
        f"with {best}; checkpoint {result.best_checkpoint}; model {result.model_uri}",
        flush=True,
    )
    return 0
