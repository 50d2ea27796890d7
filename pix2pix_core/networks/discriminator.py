"""PatchGAN discriminators, module-for-module the official ``NLayerDiscriminator`` and
``PixelDiscriminator`` (state-dict keys ``model.N.*`` and ``net.N.*`` respectively), chosen
by the official ``--netD`` (and ``--n_layers_D``) or by the paper's patch size N."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pix2pix_core.networks.norm import NormFactory, check_norm, conv_bias_for, get_norm_layer
from pix2pix_core.networks.registry import Registry

# The paper's patch sizes N (sec. 4.4) -> the official (--netD, --n_layers_D) that build them.
PATCH_SIZES: dict[int, tuple[str, int | None]] = {
    1: ("pixel", None),
    16: ("n_layers", 1),
    70: ("basic", 3),
    286: ("n_layers", 5),
}
DEFAULT_PATCH_SIZE = 70
# The official --n_layers_D default, which netD "n_layers" uses when n_layers is not given.
DEFAULT_N_LAYERS = 3


def receptive_field_of(n_layers: int | None) -> int:
    """Receptive field of an ``NLayerDiscriminator(n_layers)``, or 1 for the pixel GAN (None).

    Its first convolution has stride 2 whatever ``n_layers`` is, so 0 and 1 layers both see
    16x16 patches (0 is narrower).
    """
    if n_layers is None:
        return 1
    # Walk back from one output unit: two stride-1 k4 convs, then the stride-2 k4 convs.
    field = 1 + 3 + 3
    for _ in range(max(n_layers, 1)):
        field = 2 * field + 2
    return field


@dataclass(frozen=True, kw_only=True)
class DiscriminatorConfig:
    """The discriminator by the official ``netD`` (and ``n_layers``), or by the paper's patch
    size N.

    Precedence: ``netD`` when given, else ``n_layers`` when given (an ``n_layers`` PatchGAN),
    else ``patch_size`` (1 -> pixel, 16 -> n_layers 1, 70 -> basic, 286 -> n_layers 5).
    What is given must agree: ``netD`` "basic" is 3 layers and "pixel" has none, so another
    ``n_layers`` with them is an error; and a ``patch_size`` other than its default 70 must
    be the receptive field of the network that ``netD``/``n_layers`` describe. netD
    "n_layers" without ``n_layers`` takes the official default of 3.
    ``input_nc`` is A's plus B's channels: the discriminator sees the pair.
    """

    netD: str | None = None
    patch_size: int = DEFAULT_PATCH_SIZE
    n_layers: int | None = None
    ndf: int = 64
    norm: str = "batch"
    input_nc: int = 6

    def __post_init__(self) -> None:
        if self.netD is not None and self.netD not in DISCRIMINATORS:
            raise ValueError(
                f"unknown netD {self.netD!r}; valid discriminators: {', '.join(DISCRIMINATORS)}"
            )
        if self.patch_size not in PATCH_SIZES:
            raise ValueError(
                f"unsupported patch_size {self.patch_size!r}; valid patch sizes: "
                f"{sorted(PATCH_SIZES)} (or set netD and n_layers)"
            )
        if self.n_layers is not None and (
            not isinstance(self.n_layers, int)
            or isinstance(self.n_layers, bool)
            or self.n_layers < 0
        ):
            raise ValueError(f"n_layers must be an integer >= 0, got {self.n_layers!r}")
        check_norm(self.norm)
        for name in ("ndf", "input_nc"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self._check_agreement()

    def _check_agreement(self) -> None:
        given = " with ".join(
            f"{name} {value!r}"
            for name, value in (("netD", self.netD), ("n_layers", self.n_layers))
            if value is not None
        )
        if self.netD == "basic" and self.n_layers not in (None, DEFAULT_N_LAYERS):
            raise ValueError(
                f"{given}: 'basic' is the {DEFAULT_N_LAYERS}-layer PatchGAN; use netD "
                "'n_layers' for another number of layers"
            )
        if self.netD == "pixel" and self.n_layers is not None:
            raise ValueError(f"{given}: the pixel discriminator has no layers to set")
        if given and self.patch_size not in (DEFAULT_PATCH_SIZE, self.receptive_field):
            raise ValueError(
                f"patch_size {self.patch_size!r} contradicts {given}, whose patches are "
                f"{self.receptive_field}x{self.receptive_field}; give one or the other"
            )

    @property
    def kind(self) -> str:
        """The official ``--netD`` this config builds: "basic", "n_layers" or "pixel"."""
        if self.netD is not None:
            return self.netD
        if self.n_layers is not None:
            return "n_layers"
        return PATCH_SIZES[self.patch_size][0]

    @property
    def layers(self) -> int | None:
        """The ``NLayerDiscriminator``'s ``n_layers``; None for the pixel discriminator."""
        kind = self.kind
        if kind == "pixel":
            return None
        if kind == "basic":
            return DEFAULT_N_LAYERS
        if self.n_layers is not None:
            return self.n_layers
        if self.netD is None:  # from the patch size: 16 or 286
            return PATCH_SIZES[self.patch_size][1]
        return DEFAULT_N_LAYERS  # netD "n_layers" without n_layers, as the official default

    @property
    def receptive_field(self) -> int:
        """Side of the input patch that one output unit sees."""
        return receptive_field_of(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiscriminatorConfig:
        data = dict(data)
        if "netD" not in data and data.get("n_layers") == 0:
            # Saved before netD existed, when n_layers 0 stood for the pixel discriminator.
            data.update(netD="pixel", n_layers=None, patch_size=DEFAULT_PATCH_SIZE)
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


def _n_layer(cfg: DiscriminatorConfig) -> nn.Module:
    layers = cfg.layers
    assert layers is not None
    return NLayerDiscriminator(
        cfg.input_nc,
        ndf=cfg.ndf,
        n_layers=layers,
        norm_layer=get_norm_layer(cfg.norm),
        use_bias=conv_bias_for(cfg.norm),
    )


def _pixel(cfg: DiscriminatorConfig) -> nn.Module:
    return PixelDiscriminator(
        cfg.input_nc,
        ndf=cfg.ndf,
        norm_layer=get_norm_layer(cfg.norm),
        use_bias=conv_bias_for(cfg.norm),
    )


# --netD name -> builder of the (uninitialised) network; the official define_D's choices.
DISCRIMINATORS: Registry[Callable[[DiscriminatorConfig], nn.Module]] = Registry(
    "netD", {"basic": _n_layer, "n_layers": _n_layer, "pixel": _pixel}
)


def build_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    """Build the (uninitialised) discriminator that ``cfg`` describes."""
    return DISCRIMINATORS[cfg.kind](cfg)
