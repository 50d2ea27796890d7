"""The adversarial loss, by the official ``--gan_mode`` names."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# vanilla: the paper's cross-entropy GAN objective on logits; lsgan: least squares (Mao et al.).
GAN_MODES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "vanilla": F.binary_cross_entropy_with_logits,
    "lsgan": F.mse_loss,
}


class GANLoss(nn.Module):
    """``loss(prediction, target_is_real)`` against a constant real/fake label map.

    Targets are built per call with ``full_like``, so they always share the prediction's device,
    shape and dtype; nothing is cached on the module that autocast or ``.to()`` could desync.
    """

    def __init__(
        self, gan_mode: str = "vanilla", *, real_label: float = 1.0, fake_label: float = 0.0
    ) -> None:
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ValueError(f"unknown gan_mode {gan_mode!r}; valid modes: {sorted(GAN_MODES)}")
        self.gan_mode = gan_mode
        self.real_label = real_label
        self.fake_label = fake_label
        self._criterion = GAN_MODES[gan_mode]

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        # The loss is reduced in float32 even when the discriminator ran in bfloat16.
        prediction = prediction.float()
        label = self.real_label if target_is_real else self.fake_label
        return self._criterion(prediction, torch.full_like(prediction, label))

    def extra_repr(self) -> str:
        return f"gan_mode={self.gan_mode!r}"
