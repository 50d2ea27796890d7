"""Pix2Pix (Isola et al., CVPR 2017) in pure PyTorch: networks, losses, the training step,
checkpoints, transforms and metrics. No Ray, MLflow or storage code lives here.

The names below load their module on first use: a process that needs only a torch-free
module (`pix2pix_core.memory`, `pix2pix_core.geometry`), as every Ray worker's start-up
hook does, does not pay for importing torch (about 1.2 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pix2pix_core.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "checkpoint": (
            "load_checkpoint",
            "load_generator",
            "load_official_generator",
            "save_checkpoint",
            "save_generator",
        ),
        "losses": ("GANLoss", "gradient_penalty"),
        "metrics": ("ImageMetrics",),
        "networks": (
            "DiscriminatorConfig",
            "GeneratorConfig",
            "build_discriminator",
            "build_generator",
        ),
        "training": ("Pix2Pix", "TrainingConfig"),
        "transforms": ("paired_random_jitter", "resize", "to_tensor", "to_uint8"),
    },
)
