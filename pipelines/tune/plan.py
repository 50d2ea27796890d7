"""A sweep, planned: what every trial needs, what a sweep is (what a rerun must match to
continue it), and what it returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.common.names import File, Metric, get_metric
from pipelines.common.storage import Location
from pipelines.config.fields import learned
from pipelines.config.groups import CommonOptions
from pipelines.train.options import TrainConfig
from pipelines.train.plan import identity
from pipelines.tune.options import TuneOptions
from pipelines.tune.space import SearchSpace


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """What every trial needs to know; travels to the trials through the object store."""

    name: str
    folder: Location
    config: TrainConfig  # the sweep's own settings; a trial's sampled values go over them
    common: CommonOptions  # tracking URI resolved, storage path absolute
    space: SearchSpace
    sweep: TuneOptions
    parent_run_id: str
    concurrency: int = 1  # trials at a time, each holding its own copy of a train split

    @property
    def trials_folder(self) -> Location:
        return self.folder.join(File.SWEEP_TRIALS)

    @property
    def score(self) -> Metric:
        return get_metric(self.sweep.metric)

    def trial_run_name(self, trial_id: str) -> str:
        return f"trial-{trial_id}"

    def trial_config(self, values: Mapping[str, Any]) -> TrainConfig:
        """The sweep's settings with a trial's sampled values in place."""
        return self.config.replace(**values)


@dataclass(frozen=True, kw_only=True)
class TuneResult:
    """Where a sweep ended: the best trial, its model, and the MLflow runs."""

    sweep_name: str
    sweep_folder: str  # URL
    parent_run_id: str  # the sweep's MLflow run
    experiment_id: str
    metric: str  # as training reports it, e.g. "val_L1"
    mode: str  # "min" | "max"
    best_trial_id: str
    best_run_id: str  # the best trial's MLflow (child) run
    best_config: dict[str, Any]  # the searched options of the best trial
    best_options: dict[str, Any]  # all its options (a `pix2pix train --config`)
    best_checkpoint: str  # URL of its best checkpoint
    best_metrics: dict[str, float]  # validation metrics of that checkpoint
    model_uri: str  # the best generator, logged with the parent run (models:/m-...)
    num_trials: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sweep_identity(
    fingerprint: str, cfg: TrainConfig, sweep: TuneOptions, space: SearchSpace
) -> dict[str, Any]:
    """What a sweep is: its training identity, its learned sweep settings and the space's
    content (not the file's path). A rerun must match it to continue."""
    return {
        "train": identity(cfg, fingerprint),
        "sweep": learned(sweep),
        "search_space": space.to_yaml(),
    }


def max_epochs(space: SearchSpace, cfg: TrainConfig) -> int:
    """The most epochs a trial can train: ASHA's horizon, and "finished" in the results."""

    def most(name: str) -> int:
        p = next((p for p in space.params if p.name == name), None)
        if p is None:
            return int(getattr(cfg.optimisation, name))
        if p.dist in ("choice", "grid"):
            return int(max(p.args))
        return int(p.args[1]) - (1 if p.dist.endswith("randint") else 0)

    return most("n_epochs") + most("n_epochs_decay")


def trial_dir_name(trial: Any) -> str:
    """Tune's folder of a trial: named by its id, which a restore keeps."""
    return f"tune-{trial.trial_id}"


def trial_id_of_dir(name: str) -> str:
    return name.removeprefix("tune-")
