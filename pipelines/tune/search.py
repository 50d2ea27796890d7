"""How a sweep searches: its space, the search algorithm and its first point, early
stopping, and how many trials fit at once."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import ray
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from pipelines.common.errors import UserError
from pipelines.common.storage import Location
from pipelines.config.loader import read_yaml
from pipelines.train.options import TrainConfig, TrainOptions
from pipelines.train.plan import check_data
from pipelines.tune.options import TuneOptions, not_searchable
from pipelines.tune.space import PAPER_SEARCH_SPACE, SearchSpace, parse_search_space

# What a trial's data check depends on besides the data: the U-Net's depth against the
# crop, and the PatchGAN against the crop and batch.
SHAPE_OPTIONS = {
    "netG",
    "num_downs",
    "crop_size",
    "netD",
    "patch_size",
    "n_layers_D",
    "norm",
    "batch_size",
}

# A trial's own process only builds the trainer and waits for it: a small CPU share keeps it
# from taking a slot that Train workers or Ray Data tasks need (Tune needs a nonzero amount).
TRIAL_DRIVER_CPUS = 0.2
# Whole CPUs a trial's Ray Data reads need: Ray Data hands the CPUs Train has not reserved
# to the datasets being read, in whole CPUs, and a trial reads its train and its val split
# (docs/design.md#trial-concurrency).
DATA_CPUS_PER_TRIAL = 2.0


def load_space(sweep: TuneOptions, cfg: TrainConfig) -> SearchSpace:
    """The search space of `--search_space FILE`, or the paper's."""
    if sweep.search_space:
        values, source = read_yaml(sweep.search_space), sweep.search_space
    else:
        values, source = PAPER_SEARCH_SPACE, "the default search space"
    return parse_search_space(values, cfg, exclude=not_searchable(), source=source)


def check_trials_fit(
    cfg: TrainConfig, space: SearchSpace, dataset: dict[str, Any], data: Location
) -> None:
    """Train's data check for every trial the space can sample, before the sweep starts:
    settings or space values that no trial could train with fail once, here, instead of
    in every trial. A space that samples those options continuously is left to the trials.
    """
    searched = [p for p in space.params if p.name in SHAPE_OPTIONS]
    if any(p.dist not in ("choice", "grid") for p in searched):
        return
    for values in itertools.product(*(p.args for p in searched)):
        point = dict(zip((p.name for p in searched), values, strict=True))
        try:
            check_data(cfg.replace(**point), dataset, data)
        except UserError as err:
            check_data(cfg, dataset, data)  # the settings themselves, named plainly
            raise UserError(f"the search space's {point} cannot train: {err}") from None


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
        resources = ray.cluster_resources()
    per_trial_cpus = TRIAL_DRIVER_CPUS + opts.num_workers * cpus_per_worker + DATA_CPUS_PER_TRIAL
    fits = math.floor(resources.get("CPU", 0) / per_trial_cpus + 1e-9)
    if use_gpu:
        fits = min(fits, math.floor(resources.get("GPU", 0) / opts.num_workers))
    return max(1, fits)


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
        try:  # an optional dependency, imported only for this search
            import optuna  # noqa: F401
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            raise UserError("--search_alg optuna needs optuna: pip install optuna") from None
        return OptunaSearch(points_to_evaluate=first or None, seed=seed)
    return BasicVariantGenerator(
        points_to_evaluate=first or None, random_state=seed, max_concurrent=concurrency
    )


def baseline_point(space: SearchSpace, cfg: TrainConfig) -> list[dict]:
    """The sweep's own settings as the first trial, when the space contains them.

    With the defaults that is the paper's configuration, so every sweep is measured
    against it.
    """
    values = cfg.flat()
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


def early_stopping(sweep: TuneOptions, epochs: int) -> ASHAScheduler | None:
    """ASHA over the epochs of trials that train at most `epochs`; None (Tune's default
    FIFO: every trial trains to its end) when its grace period leaves nothing to stop.

    ASHA's rungs are at grace_period x reduction_factor^k epochs. With a grace period as
    long as the training, the only rung would be the last epoch, where stopping a trial
    would cut a finished run short.
    """
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
