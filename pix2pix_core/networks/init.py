"""Weight initialisation: the official ``init_weights(net, init_type, init_gain)``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)

# --init_type -> how a conv/linear weight is drawn given --init_gain. kaiming ignores the gain
# (fan_in, a=0), as in the official code.
INIT_TYPES: dict[str, Callable[[torch.Tensor, float], object]] = {
    "normal": lambda weight, gain: nn.init.normal_(weight, 0.0, gain),
    "xavier": lambda weight, gain: nn.init.xavier_normal_(weight, gain=gain),
    "kaiming": lambda weight, gain: nn.init.kaiming_normal_(weight, a=0, mode="fan_in"),
    "orthogonal": lambda weight, gain: nn.init.orthogonal_(weight, gain=gain),
}


def check_init_type(name: str) -> None:
    """Raise a ValueError quoting ``name`` when it is not a known init type."""
    if name not in INIT_TYPES:
        raise ValueError(f"unknown init_type {name!r}; valid types: {', '.join(INIT_TYPES)}")


@torch.no_grad()
def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Conv/linear weights by ``init_type`` (the pix2pix paper's: N(0, gain)), biases 0;
    BatchNorm weights ~ N(1, gain) and biases 0 whatever the type.

    Instance norm (affine=False) has no parameters and is left alone, as in the official code.
    """
    check_init_type(init_type)
    draw = INIT_TYPES[init_type]

    def init_module(module: nn.Module) -> None:
        if isinstance(module, _WEIGHTED):
            draw(module.weight, init_gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.SyncBatchNorm):
            nn.init.normal_(module.weight, 1.0, init_gain)
            nn.init.zeros_(module.bias)

    # Module.apply visits children before parents, the official order, so a seed draws the same
    # numbers in the same order as the official code.
    return net.apply(init_module)
