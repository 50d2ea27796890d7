"""Normalisation layers by their official ``--norm`` names."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

NormFactory = Callable[[int], nn.Module]


def _no_norm(num_features: int) -> nn.Module:
    # An Identity keeps its slot in nn.Sequential, so state-dict indices match the official nets.
    return nn.Identity()


# "syncbatch" builds plain BatchNorm2d: Pix2Pix.parallelize converts it to SyncBatchNorm once a
# process group exists, so the same config trains on one device or many.
NORMS: dict[str, NormFactory] = {
    "batch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True),
    "instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
    "syncbatch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True),
    "none": _no_norm,
}


def check_norm(name: str) -> None:
    """Raise a ValueError quoting ``name`` when it is not a known norm."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; valid norms: {sorted(NORMS)}")


def get_norm_layer(name: str) -> NormFactory:
    """Return a factory ``num_features -> nn.Module`` for the norm called ``name``."""
    check_norm(name)
    return NORMS[name]


def conv_bias_for(name: str) -> bool:
    """Whether convolutions followed by this norm carry a bias, as in the official code.

    The official nets give convs a bias only under instance norm (which has no affine shift);
    under "none" they have none either, and matching that keeps official checkpoints loadable.
    """
    check_norm(name)
    return name == "instance"
