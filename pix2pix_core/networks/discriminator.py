"""PatchGAN discriminators, module-for-module the official ``NLayerDiscriminator`` and
``PixelDiscriminator`` (state-dict keys ``model.N.*`` and ``net.N.*`` respectively)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pix2pix_core.networks.norm import NormFactory, check_norm, conv_bias_for, get_norm_layer

# The paper's patch sizes N -> official --n_layers_D (0 stands for the 1x1 PixelGAN).
PATCH_SIZES: dict[int, int] = {1: 0, 16: 1, 70: 3, 286: 5}


def receptive_field_of(n_layers: int) -> int:
    """Receptive field of an NLayerDiscriminator, or 1 for the PixelGAN (``n_layers == 0``)."""
    if n_layers == 0:
        return 1
    # Walk back from one output unit: two stride-1 k4 convs, then n_layers stride-2 k4 convs.
    field = 1 + 3 + 3
    for _ in range(n_layers):
        field = 2 * field + 2
    return field


@dataclass(frozen=True, kw_only=True)
class DiscriminatorConfig:
    """The PatchGAN by the paper's patch size N, or by the official ``--n_layers_D``.

    ``n_layers`` (when given) wins over ``patch_size``; ``n_layers=0`` is the PixelGAN.
    ``input_nc`` is A's plus B's channels: the discriminator sees the pair.
    """

    patch_size: int = 70
    n_layers: int | None = None
    ndf: int = 64
    norm: str = "batch"
    input_nc: int = 6

    def __post_init__(self) -> None:
        if self.n_layers is None and self.patch_size not in PATCH_SIZES:
            raise ValueError(
                f"unsupported patch_size {self.patch_size!r}; valid patch sizes: "
                f"{sorted(PATCH_SIZES)} (or set n_layers)"
            )
        if self.n_layers is not None and (not isinstance(self.n_layers, int) or self.n_layers < 0):
            raise ValueError(f"n_layers must be an integer >= 0, got {self.n_layers!r}")
        check_norm(self.norm)
        for name in ("ndf", "input_nc"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def layers(self) -> int:
        """The effective ``--n_layers_D`` (0 = PixelGAN)."""
        return self.n_layers if self.n_layers is not None else PATCH_SIZES[self.patch_size]

    @property
    def receptive_field(self) -> int:
        """Side of the input patch that one output unit sees."""
        return receptive_field_of(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiscriminatorConfig:
        return cls(**data)


class NLayerDiscriminator(nn.Module):
    """Official PatchGAN: k4 convs, stride 2 for ``n_layers`` then two stride-1 convs."""

    def __init__(
        self,
        input_nc: int,
        *,
        ndf: int = 64,
        n_layers: int = 3,
        norm_layer: NormFactory,
        use_bias: bool,
    ) -> None:
        super().__init__()
        kw, padw = 4, 1
        sequence: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, True),
        ]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            sequence += [
                nn.Conv2d(
                    ndf * nf_mult_prev, ndf * nf_mult, kw, stride=2, padding=padw, bias=use_bias
                ),
                norm_layer(ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
        sequence += [
            nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kw, stride=1, padding=padw, bias=use_bias),
            norm_layer(ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * nf_mult, 1, kw, stride=1, padding=padw),  # one logit per patch
        ]
        self.model = nn.Sequential(*sequence)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """Official 1x1 PatchGAN (PixelGAN): classifies each pixel independently."""

    def __init__(
        self, input_nc: int, *, ndf: int = 64, norm_layer: NormFactory, use_bias: bool
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    """Build the (uninitialised) discriminator that ``cfg`` describes."""
    norm_layer, use_bias = get_norm_layer(cfg.norm), conv_bias_for(cfg.norm)
    if cfg.layers == 0:
        return PixelDiscriminator(
            cfg.input_nc, ndf=cfg.ndf, norm_layer=norm_layer, use_bias=use_bias
        )
    return NLayerDiscriminator(
        cfg.input_nc, ndf=cfg.ndf, n_layers=cfg.layers, norm_layer=norm_layer, use_bias=use_bias
    )
