"""What a training run is made of: `TrainOptions` (data, scale, checkpoints, validation) and
the model's groups, together a `TrainConfig`.

Flag names follow the official implementation where one exists (`--batch_size`,
`--crop_size`, `--no_flip`, `--eval`, `--save_epoch_freq`). Options marked `learns` make the
run's identity: its derived name, what a rerun must match to resume it, what retrain
compares to skip training, and what a sweep may search. The others (workers' resources,
checkpoint cadence, retries, validation size) may change between attempts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipelines.config.fields import flat, learned, option, replace_options
from pipelines.config.groups import (
    ArchitectureOptions,
    DiscriminatorOptions,
    OptimisationOptions,
    PerformanceOptions,
)
from pix2pix_core import DiscriminatorConfig, GeneratorConfig, TrainingConfig


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """Training: data, scale, checkpoints, validation."""

    data: str = option("", "prepared dataset (the DST of `pix2pix prepare`)", required=True)
    batch_size: int = option(1, "images per worker per step (the paper: 1)", learns=True)
    load_size: int | None = option(
        None, "the prepared images' size (prepare's --load_size); if given, checked against it"
    )
    preprocess: str | None = option(
        None, "the prepared images' --preprocess; if given, checked against it"
    )
    crop_size: int = option(256, "random crop from the prepared load_size images", learns=True)
    no_flip: bool = option(False, "no random horizontal flip", learns=True)
    num_workers: int = option(1, "Ray Train workers (one process each, DDP)", learns=True)
    use_gpu: bool | None = option(
        None, "one GPU per worker; unset: when the cluster has a GPU per worker"
    )
    cpus_per_worker: float | None = option(
        None, "CPUs reserved per worker; unset: 0.5 on CPU, 1 with a GPU"
    )
    save_epoch_freq: int = option(1, "checkpoint every N epochs (and always after the last)")
    keep_best: int = option(2, "checkpoints kept: the best N by validation L1, plus the latest")
    max_failures: int = option(3, "worker failures to recover from (from the latest checkpoint)")
    resume_from: str | None = option(None, "start from this checkpoint URL (a run's epoch_NNNN)")
    eval: bool = option(
        False, "validate with dropout off and batch-norm running statistics", learns=True
    )
    num_val: int | None = option(None, "validate on at most N pairs; unset: the whole val split")
    grid_size: int = option(
        4, "rows of input | output | target in the per-epoch sample grid; 0: no grid"
    )
    fid_weights: str | None = option(
        None, "TorchScript Inception feature extractor for FID (none is downloaded)"
    )
    seed: int = option(0, "seed of weights init, crops and flips", learns=True)

    def __post_init__(self) -> None:
        positive = {
            "batch_size": self.batch_size,
            "crop_size": self.crop_size,
            "num_workers": self.num_workers,
            "save_epoch_freq": self.save_epoch_freq,
            "keep_best": self.keep_best,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.cpus_per_worker is not None and not self.cpus_per_worker > 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker!r}")
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(
                f"max_failures must be >= -1 (-1: no limit), got {self.max_failures!r}"
            )
        if self.num_val is not None and self.num_val < 1:
            raise ValueError(f"num_val must be a positive integer, got {self.num_val!r}")
        if self.grid_size < 0:
            raise ValueError(f"grid_size must be >= 0, got {self.grid_size!r}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Every option group of one training run, and the pix2pix_core configs they make."""

    GROUPS: ClassVar[tuple[type, ...]] = (
        TrainOptions,
        ArchitectureOptions,
        DiscriminatorOptions,
        OptimisationOptions,
        PerformanceOptions,
    )

    train: TrainOptions = field(default_factory=TrainOptions)
    architecture: ArchitectureOptions = field(default_factory=ArchitectureOptions)
    discriminator: DiscriminatorOptions = field(default_factory=DiscriminatorOptions)
    optimisation: OptimisationOptions = field(default_factory=OptimisationOptions)
    performance: PerformanceOptions = field(default_factory=PerformanceOptions)

    @classmethod
    def of(cls, groups: tuple) -> TrainConfig:
        """From option instances in `GROUPS` order (what `load_options(args, *GROUPS)` gives)."""
        return cls(**dict(zip(_FIELD_NAMES, groups, strict=True)))

    @property
    def groups(self) -> tuple:
        return tuple(getattr(self, name) for name in _FIELD_NAMES)

    def replace(self, **values: Any) -> TrainConfig:
        """This config with options changed by their flag names (`lambda_L1=10`)."""
        return TrainConfig.of(replace_options(self.groups, values))

    def generator_config(self) -> GeneratorConfig:
        return self.architecture.generator_config()

    def discriminator_config(self) -> DiscriminatorConfig:
        return self.discriminator.discriminator_config(self.architecture)

    def training_config(self) -> TrainingConfig:
        return self.optimisation.training_config(self.performance)

    def validate(self) -> None:
        """Build the core configs once, so a bad value fails before any work starts."""
        self.generator_config()
        self.discriminator_config()
        self.training_config()

    @property
    def total_epochs(self) -> int:
        return self.optimisation.total_epochs

    def learned(self) -> dict[str, Any]:
        """The settings that make what this run learns (the data aside)."""
        return learned(*self.groups)

    def flat(self) -> dict[str, Any]:
        """Every option by its flag name, as a `--config` YAML would hold it."""
        return flat(*self.groups)


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))
