"""`pix2pix tune`: a Ray Tune sweep whose trials are `pix2pix train` runs.

    result = tune(model, opts, common, sweep)   # TuneResult: best config, checkpoint, run

Ray Train V2's pattern: the Tuner runs `pix2pix_trial` once per configuration; each trial
builds the same `TorchTrainer` as `pix2pix train` (`pipelines.train.driver.build_trainer`) with
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
import itertools
import math
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.common.errors import UserError
from pipelines.common.storage import Location
from pipelines.common.text import count
from pipelines.config.options import (
    CommonOptions,
    ModelOptions,
    RayOptions,
    add_options,
    load_options,
    option,
    options_dict,
    read_yaml,
)
from pipelines.train.options import EXECUTION_ONLY, TrainOptions
from pipelines.tune.space import PAPER_SEARCH_SPACE, SearchSpace, parse_search_space

SWEEP_FILE = "sweep.json"
TRAIN_FOLDER = "train"  # trials' training runs: SWEEP/train/trial-<id>

# --metric -> (the metric train reports each epoch, the better direction)
METRICS: dict[str, tuple[str, str]] = {
    "l1": ("val_L1", "min"),
    "psnr": ("val_PSNR", "max"),
    "ssim": ("val_SSIM", "max"),
}
SEARCH_ALGS = ("random", "optuna")
# What a trial's data check depends on besides the data: the U-Net's depth against the
# crop, and the PatchGAN against the crop and batch.
SHAPE_OPTIONS = {"netG", "num_downs", "crop_size", "patch_size", "n_layers_D", "norm", "batch_size"}

# A trial's own process only builds the trainer and waits for it: a small CPU share keeps it
# from taking a slot that Train workers or Ray Data tasks need (Tune needs a nonzero amount).
TRIAL_DRIVER_CPUS = 0.2
# Whole CPUs a trial's Ray Data reads need. Ray Data (2.60) splits the CPUs that Train has not
# reserved evenly, in whole CPUs, between the datasets being read at the time, and a read task
# takes one; a trial reads its train and its val split. Measured here: on 4 logical CPUs two
# concurrent one-worker trials both starved ("Cluster resources are not enough to run any
# task") until a stale reservation expired minutes later; one at a time they run.
DATA_CPUS_PER_TRIAL = 2.0

# Train options a sweep cannot vary, and why.
NOT_SEARCHABLE: dict[str, str] = {
    "data": "every trial trains on the same prepared dataset (--data)",
    "num_workers": "a trial's resources are the same for the whole sweep (--num_workers)",
    "num_val": "every trial is scored on the same validation pairs (--num_val)",
} | {
    name: "it changes how a trial runs, not what it learns; set it with its flag"
    for name in EXECUTION_ONLY - {"num_val"}
}


@dataclass(frozen=True, kw_only=True)
class TuneOptions:
    """Sweep: the search space, the trials, early stopping."""

    search_space: str | None = option(
        None, "YAML of option: distribution (default: the paper's lambda_L1, patch_size, norm)"
    )
    num_samples: int = option(16, "trials sampled from the search space")
    max_concurrent_trials: int | None = option(
        None, "trials at once (default: as many as the cluster's CPUs and GPUs fit)"
    )
    search_alg: str = option("random", "random | optuna", choices=SEARCH_ALGS)
    metric: str = option(
        "l1", "validation objective: l1 (lower is better) | psnr | ssim", choices=tuple(METRICS)
    )
    grace_period: int = option(10, "epochs every trial trains before ASHA may stop it")
    reduction_factor: int = option(4, "ASHA keeps the best 1/N of the trials at each rung")

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r}: choose one of {', '.join(METRICS)}")
        if self.search_alg not in SEARCH_ALGS:
            raise ValueError(
                f"search_alg {self.search_alg!r}: choose one of {', '.join(SEARCH_ALGS)}"
            )
        for name in ("num_samples", "grace_period"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        limit = self.max_concurrent_trials
        if limit is not None and limit < 1:
            raise ValueError(f"max_concurrent_trials must be a positive integer, got {limit!r}")
        if self.reduction_factor < 2:
            raise ValueError(f"reduction_factor must be >= 2, got {self.reduction_factor!r}")

    @property
    def score(self) -> tuple[str, str]:
        """(metric name as train reports it, "min" | "max")."""
        return METRICS[self.metric]


@dataclass(frozen=True, kw_only=True)
class TuneResult:
    """Where a sweep ended: the best trial, its model, and the MLflow runs."""

    sweep_name: str
    sweep_folder: str  # URL
    parent_run_id: str  # the sweep's MLflow run
    experiment_id: str
    metric: str  # e.g. "val_L1"
    mode: str  # "min" | "max"
    best_trial_id: str
    best_run_id: str  # the best trial's MLflow (child) run
    best_config: dict[str, Any]  # the searched options of the best trial
    best_options: dict[str, Any]  # all its model and train options (a train --config)
    best_checkpoint: str  # URL of its best checkpoint
    best_metrics: dict[str, float]  # validation metrics of that checkpoint
    model_uri: str  # the best generator, logged with the parent run (models:/m-...)
    num_trials: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """What every trial needs to know; travels to the trials through the object store."""

    name: str
    folder: Location
    model: ModelOptions
    options: TrainOptions
    common: CommonOptions  # tracking URI resolved, storage path absolute
    space: SearchSpace
    sweep: TuneOptions
    parent_run_id: str

    @property
    def trials_folder(self) -> Location:
        return self.folder.join(TRAIN_FOLDER)

    def trial_run_name(self, trial_id: str) -> str:
        return f"trial-{trial_id}"

    def trial_options(self, config: Mapping[str, Any]) -> tuple[ModelOptions, TrainOptions]:
        """The sweep's options with a trial's sampled values in place."""
        return _with_values(self.model, self.options, config)


def _with_values(
    model: ModelOptions, opts: TrainOptions, values: Mapping[str, Any]
) -> tuple[ModelOptions, TrainOptions]:
    model_keys = {f.name for f in dataclasses.fields(ModelOptions)}
    return (
        dataclasses.replace(model, **{k: v for k, v in values.items() if k in model_keys}),
        dataclasses.replace(opts, **{k: v for k, v in values.items() if k not in model_keys}),
    )


# --------------------------------------------------------------------------------------
# 1. the trial: one training run, reporting every epoch to Tune
# --------------------------------------------------------------------------------------


def pix2pix_trial(config: dict[str, Any], plan: SweepPlan) -> None:
    """Train one configuration with the same TorchTrainer as `pix2pix train`."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipelines.train.driver import build_trainer, completed_result, finish_run, plan_run

    trial_id = ray.tune.get_context().get_trial_id()
    model, opts = plan.trial_options(config)
    common = dataclasses.replace(
        plan.common,
        storage_path=plan.trials_folder.url,
        run_name=plan.trial_run_name(trial_id),
    )
    # The run folder and MLflow run are named by the trial id, which Tune keeps across a
    # restore: an interrupted trial finds its run again and resumes from its checkpoint.
    run = plan_run(model, opts, common, parent_run_id=plan.parent_run_id)
    print(f"trial {trial_id}: training run {run.name}, MLflow run {run.mlflow_run_id}", flush=True)
    done = completed_result(run)
    if done is not None:
        # Trained to the end before the sweep was interrupted: hand Tune the result again.
        ray.tune.report(
            {**done.best_metrics, "epoch": done.epochs, "checkpoint_path": done.best_checkpoint}
        )
        return
    result = build_trainer(run, callbacks=[TuneReportCallback()]).fit()
    finish_run(run, result)


# --------------------------------------------------------------------------------------
# 2. the sweep
# --------------------------------------------------------------------------------------


def load_space(sweep: TuneOptions, model: ModelOptions, opts: TrainOptions) -> SearchSpace:
    """The search space of `--search_space FILE`, or the paper's."""
    if sweep.search_space:
        values, source = read_yaml(sweep.search_space), sweep.search_space
    else:
        values, source = PAPER_SEARCH_SPACE, "the default search space"
    return parse_search_space(values, (model, opts), exclude=NOT_SEARCHABLE, source=source)


def default_concurrency(
    opts: TrainOptions,
    use_gpu: bool,
    cpus_per_worker: float,
    resources: Mapping[str, float] | None = None,
) -> int:
    """How many trials the cluster's resources (default: Ray's now) fit at once; at least 1.

    Ray Tune does not count the Train workers a trial starts (they are Ray Train's own
    placement group) nor its Ray Data reads, so this is where the sweep keeps trials from
    starving each other: each takes its driver's share, its workers, and the whole CPUs
    its reads need.
    """
    if resources is None:
        import ray

        resources = ray.cluster_resources()
    workers_cpus = opts.num_workers * cpus_per_worker
    per_trial_cpus = TRIAL_DRIVER_CPUS + workers_cpus + DATA_CPUS_PER_TRIAL
    fits = math.floor(resources.get("CPU", 0) / per_trial_cpus + 1e-9)
    if use_gpu:
        fits = min(fits, math.floor(resources.get("GPU", 0) / opts.num_workers))
    return max(1, fits)


def sweep_name(common: CommonOptions, data: Location) -> str:
    name = common.run_name or "tune-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", data.name) or "data")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(
            f"--run_name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)"
        )
    return name


def search_algorithm(
    sweep: TuneOptions, space: SearchSpace, seed: int, first: list[dict], concurrency: int
):
    """The search algorithm, limited to `concurrency` trials at once.

    Tune applies `max_concurrent_trials` to a `Searcher` (Optuna) but ignores it for the
    random search's `BasicVariantGenerator`, which takes the limit itself.
    """
    if sweep.search_alg == "optuna":
        if space.has_grid:
            raise UserError("--search_alg optuna cannot search a grid; use choice instead")
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise UserError("--search_alg optuna needs optuna: pip install optuna") from None
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(points_to_evaluate=first or None, seed=seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(
        points_to_evaluate=first or None, random_state=seed, max_concurrent=concurrency
    )


def baseline_point(space: SearchSpace, model: ModelOptions, opts: TrainOptions) -> list[dict]:
    """The sweep's own settings as the first trial, when the space contains them.

    With the defaults that is the paper's configuration, so every sweep is measured
    against it.
    """
    values = options_dict(model, opts)
    point = {}
    for p in space.params:
        value = values[p.name]
        if p.dist in ("choice", "grid"):
            inside = value in p.args
        elif p.dist in ("randint", "lograndint"):
            inside = p.args[0] <= value < p.args[1]
        else:
            inside = p.args[0] <= value <= p.args[1]
        if not inside or p.dist == "grid":
            return []
        point[p.name] = value
    return [point]


def tune(
    model: ModelOptions,
    opts: TrainOptions,
    common: CommonOptions,
    sweep: TuneOptions,
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
    from ray import tune as ray_tune

    from pipelines.common.dataset import read_info
    from pipelines.common.ray_runtime import init_ray
    from pipelines.train.driver import worker_resources
    from pipelines.tune.results import open_parent_run, summarise

    # 1. check everything a trial would reject before anything starts
    model.validate()
    if not opts.data:
        raise UserError("--data is required: the prepared dataset (DST of `pix2pix prepare`)")
    data = Location.parse(opts.data, common.storage_options)
    opts = dataclasses.replace(opts, data=data.url)  # trials run in other directories
    space = load_space(sweep, model, opts)
    # Options the space fixes are the sweep's own settings from here on.
    model, opts = _with_values(model, opts, space.fixed)
    check_trials_fit(model, opts, space, read_info(data), data)
    name = sweep_name(common, data)
    storage = Location.parse(common.storage_path, common.storage_options)
    folder = storage.join(name)
    from pipelines.common.tracking import resolve_tracking_uri

    common = dataclasses.replace(
        common, storage_path=storage.url, tracking_uri=resolve_tracking_uri(common.tracking_uri)
    )
    metric, mode = sweep.score
    init_ray(ray_address)
    use_gpu, cpus_per_worker = worker_resources(opts)
    concurrency = sweep.max_concurrent_trials or default_concurrency(opts, use_gpu, cpus_per_worker)
    search_alg = search_algorithm(
        sweep, space, opts.seed, baseline_point(space, model, opts), concurrency
    )

    # 2. the MLflow parent run (the same one when a sweep continues)
    sweep_run_id = open_parent_run(
        name, folder, data, model, opts, common, sweep, space, parent_run_id=parent_run_id
    )
    plan = SweepPlan(
        name=name,
        folder=folder,
        model=model,
        options=opts,
        common=common,
        space=space,
        sweep=sweep,
        parent_run_id=sweep_run_id,
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
        epochs = max_epochs(space, model)
        scheduler = early_stopping(sweep, epochs)
        stopping = (
            f"ASHA on {metric} after {count(sweep.grace_period, 'epoch')}"
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
                metric=metric,
                mode=mode,
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
            ),
        )
    results = tuner.fit()

    # 4. the results table, the best trial and its model, in MLflow
    return summarise(plan, results)


def check_trials_fit(
    model: ModelOptions,
    opts: TrainOptions,
    space: SearchSpace,
    dataset: dict[str, Any],
    data: Location,
) -> None:
    """Train's data check for every trial the space can sample, before the sweep starts:
    settings or space values that no trial could train with fail once, here, instead of
    in every trial. A space that samples those options continuously is left to the trials.
    """
    from pipelines.train.driver import check_data

    searched = [p for p in space.params if p.name in SHAPE_OPTIONS]
    if any(p.dist not in ("choice", "grid") for p in searched):
        return
    for values in itertools.product(*(p.args for p in searched)):
        point = dict(zip((p.name for p in searched), values, strict=True))
        try:
            check_data(*_with_values(model, opts, point), dataset, data)
        except UserError as err:
            check_data(model, opts, dataset, data)  # the settings themselves, named plainly
            raise UserError(f"the search space's {point} cannot train: {err}") from None


def early_stopping(sweep: TuneOptions, epochs: int):  # -> ASHAScheduler | None
    """ASHA over the epochs of trials that train at most `epochs`; None (Tune's default
    FIFO: every trial trains to its end) when its grace period leaves nothing to stop.

    ASHA's rungs are at grace_period x reduction_factor^k epochs. With a grace period as
    long as the training, the only rung would be the last epoch, where stopping a trial
    would cut a finished run short.
    """
    from ray.tune.schedulers import ASHAScheduler

    if sweep.grace_period >= epochs:
        return None
    return ASHAScheduler(
        time_attr="epoch",
        # One past the last epoch: ASHA stops a trial that reaches max_t, which would kill
        # it before its run records its end; this way a trial that trains to the end
        # finishes on its own.
        max_t=epochs + 1,
        grace_period=sweep.grace_period,
        reduction_factor=sweep.reduction_factor,
    )


def max_epochs(space: SearchSpace, model: ModelOptions) -> int:
    """The most epochs a trial can train: ASHA's horizon, and "finished" in the results."""

    def most(name: str) -> int:
        p = next((p for p in space.params if p.name == name), None)
        if p is None:
            return int(getattr(model, name))
        if p.dist in ("choice", "grid"):
            return int(max(p.args))
        return int(p.args[1]) - (1 if p.dist.endswith("randint") else 0)

    return most("n_epochs") + most("n_epochs_decay")


def trial_dir_name(trial: Any) -> str:
    """Tune's folder of a trial: named by its id, which a restore keeps."""
    return f"tune-{trial.trial_id}"


def trial_id_of_dir(name: str) -> str:
    return name.removeprefix("tune-")


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, TuneOptions, TrainOptions, ModelOptions, CommonOptions, RayOptions)


def run(args: argparse.Namespace) -> int:
    sweep, opts, model, common, ray_opts = load_options(
        args, TuneOptions, TrainOptions, ModelOptions, CommonOptions, RayOptions
    )
    started = time.monotonic()
    result = tune(model, opts, common, sweep, ray_address=ray_opts.ray_address)
    best = ", ".join(f"{k}={v!r}" for k, v in result.best_config.items())
    print(
        f"pix2pix tune: {count(result.num_trials, 'trial')} in {time.monotonic() - started:.0f} s; "
        f"best {result.metric} {result.best_metrics.get(result.metric, float('nan')):.4f} "
        f"with {best}; checkpoint {result.best_checkpoint}; model {result.model_uri}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace()))
