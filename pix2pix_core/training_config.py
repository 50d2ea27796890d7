"""The optimisation settings of a pix2pix run and the official learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pix2pix_core.losses import GAN_MODES

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Optimisation settings; defaults are the paper's (Adam 2e-4, beta1 0.5, lambda_L1 100,
    100 epochs at the initial rate then 100 of linear decay to zero).

    ``channels_last``, ``autocast`` and ``fused_adam`` are performance switches: None picks what
    pays on the device in use (CUDA: all three; CPU: fused Adam, and bf16 autocast where the
    CPU has native bf16); False gives PyTorch's default behaviour. ``compile`` runs both
    networks through ``torch.compile``, in ``compile_mode``: "reduce-overhead" replays their
    kernels as CUDA graphs, which pays where a step is bound by kernel launches (the paper's
    batch sizes on a fast GPU). None of them changes the algorithm.
    """

    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 100
    n_epochs_decay: int = 100
    epoch_count: int = 1
    init_gain: float = 0.02
    channels_last: bool | None = None
    autocast: bool | None = None
    fused_adam: bool | None = None
    compile: bool = False
    compile_mode: str = "default"

    def __post_init__(self) -> None:
        if self.gan_mode not in GAN_MODES:
            raise ValueError(
                f"unknown gan_mode {self.gan_mode!r}; valid modes: {sorted(GAN_MODES)}"
            )
        _require(self.lambda_l1 >= 0, "lambda_l1 must be >= 0", self.lambda_l1)
        _require(self.lr > 0, "lr must be > 0", self.lr)
        _require(0 <= self.beta1 < 1, "beta1 must be in [0, 1)", self.beta1)
        _require(0 <= self.beta2 < 1, "beta2 must be in [0, 1)", self.beta2)
        _require(self.init_gain > 0, "init_gain must be > 0", self.init_gain)
        for name, low in (("n_epochs", 0), ("n_epochs_decay", 0), ("epoch_count", 1)):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and value >= low, f"{name} must be an int >= {low}", value
            )
        _require(
            self.n_epochs + self.n_epochs_decay >= 1,
            "n_epochs + n_epochs_decay must be >= 1 (nothing to train)",
            (self.n_epochs, self.n_epochs_decay),
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
