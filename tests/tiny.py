"""The tiny model the pipeline tests train, evaluate and translate, in every form they use.

A U-Net of depth 5 with 8 filters (so crops are multiples of 32 px) and a PatchGAN with 8
filters; the tiny config trains one epoch at the initial rate and one of decay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.train.options import TrainConfig
from pix2pix_core import GeneratorConfig

TINY_ARCHITECTURE: dict[str, Any] = {"num_downs": 5, "ngf": 8}
TINY_MODEL: dict[str, Any] = {**TINY_ARCHITECTURE, "ndf": 8}
TINY_EPOCHS: dict[str, Any] = {"n_epochs": 1, "n_epochs_decay": 1}
CROP = 32
GENERATOR = GeneratorConfig(num_downs=5, ngf=8)


def tiny_config(**changes: Any) -> TrainConfig:
    """The tiny model's training config at 32 px crops, with `changes` by flag name."""
    return TrainConfig().replace(**{**TINY_MODEL, **TINY_EPOCHS, "crop_size": CROP, **changes})


def to_flags(values: Mapping[str, Any]) -> list[str]:
    """{"ngf": 8} -> ["--ngf", "8"]."""
    return [item for k, v in values.items() for item in (f"--{k}", str(v))]
