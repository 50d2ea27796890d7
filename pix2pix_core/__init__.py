"""Pix2Pix (Isola et al., CVPR 2017) in pure PyTorch: networks, losses, the training step,
checkpoints, transforms and metrics. No Ray, MLflow or storage code lives here."""

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
