"""Pix2Pix (Isola et al., CVPR 2017) in pure PyTorch: networks, losses, the training step,
checkpoints, transforms and metrics. No Ray, MLflow or storage code lives here.

The names below load their module on first use: a process that needs only a torch-free
module (`pix2pix_core.memory`, `pix2pix_core.geometry`), as every Ray worker's start-up
hook does, does not pay for importing torch (about 1.2 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pix2pix_core.checkpoint import (
        load_checkpoint,
        load_generator,
        load_official_generator,
        save_checkpoint,
        save_generator,
    )
    from pix2pix_core.losses import GANLoss, gradient_penalty
    from pix2pix_core.metrics import ImageMetrics
    from pix2pix_core.networks import (
        DiscriminatorConfig,
        GeneratorConfig,
        build_discriminator,
        build_generator,
    )
    from pix2pix_core.training import Pix2Pix, TrainingConfig
    from pix2pix_core.transforms import paired_random_jitter, resize, to_tensor, to_uint8

_MODULE_OF = {
    "load_checkpoint": "checkpoint",
    "load_generator": "checkpoint",
    "load_official_generator": "checkpoint",
    "save_checkpoint": "checkpoint",
    "save_generator": "checkpoint",
    "GANLoss": "losses",
    "gradient_penalty": "losses",
    "ImageMetrics": "metrics",
    "DiscriminatorConfig": "networks",
    "GeneratorConfig": "networks",
    "build_discriminator": "networks",
    "build_generator": "networks",
    "Pix2Pix": "training",
    "TrainingConfig": "training",
    "paired_random_jitter": "transforms",
    "resize": "transforms",
    "to_tensor": "transforms",
    "to_uint8": "transforms",
}

__all__ = [
    "DiscriminatorConfig",
    "GANLoss",
    "GeneratorConfig",
    "ImageMetrics",
    "Pix2Pix",
    "TrainingConfig",
    "build_discriminator",
    "build_generator",
    "gradient_penalty",
    "load_checkpoint",
    "load_generator",
    "load_official_generator",
    "paired_random_jitter",
    "resize",
    "save_checkpoint",
    "save_generator",
    "to_tensor",
    "to_uint8",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
