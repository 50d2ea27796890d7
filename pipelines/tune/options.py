"""The options of `pix2pix tune` beyond training's, and which training options a sweep may
search (derived from the `learns` mark)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from pipelines.common.names import METRIC_NAMES
from pipelines.config.fields import option
from pipelines.train.options import TrainConfig

SEARCH_ALGS = ("random", "optuna")


@dataclass(frozen=True, kw_only=True)
class TuneOptions:
    """Sweep: the search space, the trials, early stopping."""

    search_space: str | None = option(
        None, "YAML of option: distribution (default: the paper's lambda_L1, patch_size, norm)"
    )
    num_samples: int = option(16, "trials sampled from the search space", learns=True)
    max_concurrent_trials: int | None = option(
        None, "trials at once (default: as many as the cluster's CPUs and GPUs fit)"
    )
    search_alg: str = option("random", "random | optuna", choices=SEARCH_ALGS, learns=True)
    metric: str = option(
        "l1",
        "validation objective: l1 (lower is better) | psnr | ssim",
        choices=METRIC_NAMES,
        learns=True,
    )
    grace_period: int = option(10, "epochs every trial trains before ASHA may stop it", learns=True)
    reduction_factor: int = option(
        4, "ASHA keeps the best 1/N of the trials at each rung", learns=True
    )

    def __post_init__(self) -> None:
        if self.metric not in METRIC_NAMES:
            raise ValueError(f"metric {self.metric!r}: choose one of {', '.join(METRIC_NAMES)}")
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


# Training options a sweep cannot vary though they change what is learnt, and why.
_FIXED_FOR_A_SWEEP = {
    "data": "every trial trains on the same prepared dataset (--data)",
    "num_workers": "a trial's resources are the same for the whole sweep (--num_workers)",
    "num_val": "every trial is scored on the same validation pairs (--num_val)",
}
_HOW_NOT_WHAT = "it changes how a trial runs, not what it learns; set it with its flag"


def not_searchable() -> dict[str, str]:
    """Training options a search space may not name -> the reason: those above, and every
    option not marked `learns`."""
    reasons = dict(_FIXED_FOR_A_SWEEP)
    for group in TrainConfig.GROUPS:
        for f in fields(group):
            if not f.metadata.get("learns"):
                reasons.setdefault(f.name, _HOW_NOT_WHAT)
    return reasons
