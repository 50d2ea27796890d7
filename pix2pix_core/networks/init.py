"""Weight initialisation matching the official ``init_weights(net, "normal", init_gain)``."""

from __future__ import annotations

import torch
from torch import nn

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


@torch.no_grad()
def init_weights(net: nn.Module, init_gain: float = 0.02) -> nn.Module:
    """Conv/linear weights ~ N(0, gain), biases 0; BatchNorm weights ~ N(1, gain), biases 0.

    Instance norm (affine=False) has no parameters and is left alone, as in the official code.
    """

    def init_module(module: nn.Module) -> None:
        if isinstance(module, _WEIGHTED):
            nn.init.normal_(module.weight, 0.0, init_gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.SyncBatchNorm):
            nn.init.normal_(module.weight, 1.0, init_gain)
            nn.init.zeros_(module.bias)

    # Module.apply visits children before parents, the official order, so a seed draws the same
    # numbers in the same order as the official code.
    return net.apply(init_module)
