"""The discriminator run on a fake and a real batch of pairs in one forward."""

from __future__ import annotations

import torch
from torch import nn


class PairedDiscriminator(nn.Module):
    """Runs the discriminator on the fake pair and on the real pair in one ``forward``.

    The two passes stay separate (own batch statistics each, as in the official code), but a
    DDP wrapper around this module broadcasts BatchNorm buffers once per backward. Wrapping the
    bare discriminator and calling it twice makes DDP's second forward overwrite, in place, the
    running stats that the first pass saved for its backward (cuDNN's batch-norm backward takes
    them), and autograd then fails with "modified by an inplace operation".
    """

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(
        self, fake_pair: torch.Tensor, real_pair: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.discriminator(fake_pair), self.discriminator(real_pair)
