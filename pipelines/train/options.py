"""The options of `pix2pix train` beyond the model: data, scale, checkpoints, validation.

The network and its optimisation are `ModelOptions`; storage, run name and tracking are
`CommonOptions`. Flag names follow the official implementation where one exists
(`--batch_size`, `--crop_size`, `--no_flip`, `--eval`, `--save_epoch_freq`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.config.options import option

# Settings that change how a run is executed but not what it learns. They may differ when
# a run resumes, and they do not enter the derived run name.
EXECUTION_ONLY = frozenset(
    {
        "use_gpu",
        "cpus_per_worker",
        "save_epoch_freq",
        "keep_best",
        "max_failures",
        "resume_from",
        "num_val",
        "grid_size",
        "fid_weights",
    }
)


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """Training: data, scale, checkpoints, validation."""

    data: str = option("", "prepared dataset (the DST of `pix2pix prepare`)", required=True)
    batch_size: int = option(1, "images per worker per step (the paper: 1)")
    crop_size: int = option(256, "random crop from the prepared load_size images")
    no_flip: bool = option(False, "no random horizontal flip")
    num_workers: int = option(1, "Ray Train workers (one process each, DDP)")
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
    eval: bool = option(False, "validate with dropout off and batch-norm running statistics")
    num_val: int | None = option(None, "validate on at most N pairs; unset: the whole val split")
    grid_size: int = option(
        4, "rows of input | output | target in the per-epoch sample grid; 0: no grid"
    )
    fid_weights: str | None = option(
        None, "TorchScript Inception feature extractor for FID (none is downloaded)"
    )
    seed: int = option(0, "seed of weights init, crops and flips")

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
