"""The adversarial loss by the official ``--gan_mode`` names, and the official WGAN-GP
gradient penalty (``networks.cal_gradient_penalty``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# vanilla: the paper's cross-entropy GAN objective on logits; lsgan: least squares (Mao et al.);
# wgangp: the Wasserstein critic's score, labels unused (its penalty is `gradient_penalty`).
GAN_MODES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None] = {
    "vanilla": F.binary_cross_entropy_with_logits,
    "lsgan": F.mse_loss,
    "wgangp": None,
}

# The official cal_gradient_penalty's `type`: where the gradient norm is measured.
PENALTY_POINTS = ("mixed", "real", "fake")


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
            raise ValueError(f"unknown gan_mode {gan_mode!r}; valid modes: {', '.join(GAN_MODES)}")
        self.gan_mode = gan_mode
        self.real_label = real_label
        self.fake_label = fake_label
        self._criterion = GAN_MODES[gan_mode]

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        # The loss is reduced in float32 even when the discriminator ran in bfloat16.
        prediction = prediction.float()
        if self._criterion is None:  # wgangp, as the official: -mean on real, +mean on fake
            return -prediction.mean() if target_is_real else prediction.mean()
        label = self.real_label if target_is_real else self.fake_label
        return self._criterion(prediction, torch.full_like(prediction, label))

    def extra_repr(self) -> str:
        return f"gan_mode={self.gan_mode!r}"


def gradient_penalty(
    discriminator: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    point: str = "mixed",
    constant: float = 1.0,
    lambda_gp: float = 10.0,
) -> torch.Tensor:
    """``lambda_gp * mean_i (||d D(x_i) / d x_i||_2 - constant)**2``: the official
    ``cal_gradient_penalty`` (WGAN-GP, Gulrajani et al. 2017) with its defaults.

    ``x`` is, per sample, ``alpha * real + (1 - alpha) * fake`` with ``alpha ~ U[0, 1)`` drawn
    from torch's generator on ``real``'s device ("mixed"), or the real or fake batch itself.
    As in the official code, 1e-16 is added to every gradient element before the norm, and the
    gradient is kept in the graph (the penalty is trained through). No gradient flows into
    ``real`` or ``fake``.
    """
    if point not in PENALTY_POINTS:
        raise ValueError(f"unknown penalty point {point!r}; valid points: {PENALTY_POINTS}")
    real, fake = real.detach(), fake.detach()
    if point == "mixed":
        alpha = torch.rand(real.shape[0], 1, device=real.device)
        alpha = alpha.view(-1, *([1] * (real.dim() - 1)))
        x = alpha * real + (1 - alpha) * fake
    else:
        x = real if point == "real" else fake
    x = x.clone().requires_grad_(True)
    score = discriminator(x)
    (gradient,) = torch.autograd.grad(
        outputs=score, inputs=x, grad_outputs=torch.ones_like(score), create_graph=True
    )
    norms = (gradient.float().reshape(real.shape[0], -1) + 1e-16).norm(2, dim=1)
    return ((norms - constant) ** 2).mean() * lambda_gp
