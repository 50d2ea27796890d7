"""The optimisation settings of a pix2pix run and the official learning-rate schedules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler

from pix2pix_core.losses import GAN_MODES
from pix2pix_core.networks.init import INIT_TYPES

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

Scheduler = lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Optimisation settings; defaults are the paper's (Adam 2e-4, beta1 0.5, lambda_L1 100,
    100 epochs at the initial rate then 100 of linear decay to zero, N(0, 0.02) weights).

    ``lr_policy`` and ``lr_decay_iters`` are the official ones (see ``LR_POLICIES``).
    ``lambda_gp`` weighs the WGAN-GP gradient penalty in the discriminator's loss; its
    default 0 is the official pix2pix, whose ``backward_D`` adds no penalty even with
    ``--gan_mode wgangp`` (``cal_gradient_penalty`` exists in its networks.py, called by no
    model); 10 is the penalty's own default.

    ``channels_last``, ``autocast`` and ``fused_adam`` are performance switches: None picks what
    pays on the device in use (CUDA: all three; CPU: fused Adam, and bf16 autocast where the
    CPU has native bf16); False gives PyTorch's default behaviour. ``compile`` runs both
    networks through ``torch.compile``, in ``compile_mode``: "reduce-overhead" replays their
    kernels as CUDA graphs, which pays where a step is bound by kernel launches (the paper's
    batch sizes on a fast GPU). None of them changes the algorithm.
    """

    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    lambda_gp: float = 0.0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 100
    n_epochs_decay: int = 100
    epoch_count: int = 1
    lr_policy: str = "linear"
    lr_decay_iters: int = 50
    init_type: str = "normal"
    init_gain: float = 0.02
    channels_last: bool | None = None
    autocast: bool | None = None
    fused_adam: bool | None = None
    compile: bool = False
    compile_mode: str = "default"

    def __post_init__(self) -> None:
        _require(
            self.gan_mode in GAN_MODES,
            f"gan_mode must be one of {', '.join(GAN_MODES)}",
            self.gan_mode,
        )
        _require(self.lambda_l1 >= 0, "lambda_l1 must be >= 0", self.lambda_l1)
        _require(self.lambda_gp >= 0, "lambda_gp must be >= 0", self.lambda_gp)
        _require(
            self.lambda_gp == 0 or self.gan_mode == "wgangp",
            f"lambda_gp is the WGAN-GP penalty: it needs gan_mode 'wgangp', not {self.gan_mode!r}",
            self.lambda_gp,
        )
        _require(self.lr > 0, "lr must be > 0", self.lr)
        _require(0 <= self.beta1 < 1, "beta1 must be in [0, 1)", self.beta1)
        _require(0 <= self.beta2 < 1, "beta2 must be in [0, 1)", self.beta2)
        _require(self.init_gain > 0, "init_gain must be > 0", self.init_gain)
        _require(
            self.init_type in INIT_TYPES,
            f"init_type must be one of {', '.join(INIT_TYPES)}",
            self.init_type,
        )
        _require(
            self.lr_policy in LR_POLICIES,
            f"lr_policy must be one of {', '.join(LR_POLICIES)}",
            self.lr_policy,
        )
        for name, low in (
            ("n_epochs", 0),
            ("n_epochs_decay", 0),
            ("epoch_count", 1),
            ("lr_decay_iters", 1),
        ):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and value >= low, f"{name} must be an int >= {low}", value
            )
        _require(
            self.n_epochs + self.n_epochs_decay >= 1,
            "n_epochs + n_epochs_decay must be >= 1 (nothing to train)",
            (self.n_epochs, self.n_epochs_decay),
        )
        _require(
            self.lr_policy != "cosine" or self.n_epochs >= 1,
            "lr_policy 'cosine' anneals over n_epochs, which must be >= 1",
            self.n_epochs,
        )
        for name in ("channels_last", "autocast", "fused_adam"):
            value = getattr(self, name)
            _require(
                value is None or isinstance(value, bool), f"{name} must be a bool or None", value
            )
        _require(isinstance(self.compile, bool), "compile must be a bool", self.compile)
        _require(
            self.compile_mode in COMPILE_MODES,
            f"compile_mode must be one of {', '.join(COMPILE_MODES)}",
            self.compile_mode,
        )
        _require(
            self.compile or self.compile_mode == "default",
            "compile_mode applies to torch.compile: set compile too (--compile)",
            self.compile_mode,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        return cls(**data)


def _require(ok: bool, message: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{message}, got {value!r}")


def lambda_rule(epoch_count: int, n_epochs: int, n_epochs_decay: int) -> Callable[[int], float]:
    """The official linear policy: constant for ``n_epochs``, then linear decay towards zero
    over ``n_epochs_decay``; ``epoch`` is the scheduler's step count, ``epoch_count`` where a
    run (re)starts counting, as the official ``--epoch_count``."""

    def rule(epoch: int) -> float:
        return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1)

    return rule


def _linear(optimizer: torch.optim.Optimizer, cfg: TrainingConfig) -> Scheduler:
    rule = lambda_rule(cfg.epoch_count, cfg.n_epochs, cfg.n_epochs_decay)
    return lr_scheduler.LambdaLR(optimizer, rule)


def _step(optimizer: torch.optim.Optimizer, cfg: TrainingConfig) -> Scheduler:
    return lr_scheduler.StepLR(optimizer, step_size=cfg.lr_decay_iters, gamma=0.1)


def _plateau(optimizer: torch.optim.Optimizer, cfg: TrainingConfig) -> Scheduler:
    return lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.2, threshold=0.01, patience=5
    )


def _cosine(optimizer: torch.optim.Optimizer, cfg: TrainingConfig) -> Scheduler:
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.n_epochs, eta_min=0)


# --lr_policy -> the official get_scheduler's scheduler, with its constants: linear (above);
# step: x0.1 every lr_decay_iters epochs; plateau: x0.2 after 5 epochs without a 1% gain in a
# metric (lower is better); cosine: from lr to 0 over n_epochs (then back up, as PyTorch's).
LR_POLICIES: dict[str, Callable[[torch.optim.Optimizer, TrainingConfig], Scheduler]] = {
    "linear": _linear,
    "step": _step,
    "plateau": _plateau,
    "cosine": _cosine,
}


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig) -> Scheduler:
    """The official ``get_scheduler(optimizer, opt)`` for ``cfg.lr_policy``."""
    return LR_POLICIES[cfg.lr_policy](optimizer, cfg)
