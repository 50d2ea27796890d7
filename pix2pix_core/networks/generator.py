"""The generator by its official ``--netG`` name: a U-Net (``unet.py``) or a ResNet
(``resnet.py``), described by a ``GeneratorConfig``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from pix2pix_core.networks.norm import check_norm, conv_bias_for, get_norm_layer
from pix2pix_core.networks.registry import Registry
from pix2pix_core.networks.resnet import N_DOWNSAMPLING, ResnetGenerator
from pix2pix_core.networks.unet import MIN_DEPTH, UnetGenerator

# U-Net --netG names -> number of downsamplings (2**depth: the side it bottoms out at 1x1).
UNET_DEPTHS: dict[str, int] = {"unet_256": 8, "unet_128": 7}
# ResNet --netG names -> residual blocks.
RESNET_BLOCKS: dict[str, int] = {"resnet_9blocks": 9, "resnet_6blocks": 6}
# The official --crop_size default, which the ResNets are trained at unless told otherwise.
RESNET_CROP_SIZE = 256


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """``netG``/``ngf``/``norm``/``use_dropout`` keep the official flag names and defaults.

    ``use_dropout=True`` is the pix2pix default (the official model sets it unless
    ``--no_dropout``), for the U-Nets and the ResNets alike. ``num_downs`` overrides the
    depth that a U-Net's ``netG`` implies; it does not apply to the ResNets.
    """

    netG: str = "unet_256"
    ngf: int = 64
    norm: str = "batch"
    use_dropout: bool = True
    input_nc: int = 3
    output_nc: int = 3
    num_downs: int | None = None

    def __post_init__(self) -> None:
        if self.netG not in GENERATORS:
            raise ValueError(
                f"unknown netG {self.netG!r}; valid generators: {', '.join(GENERATORS)}"
            )
        check_norm(self.norm)
        for name in ("ngf", "input_nc", "output_nc"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_downs is not None:
            if not self.is_unet:
                raise ValueError(
                    f"num_downs sets a U-Net's depth; netG {self.netG!r} is a ResNet, "
                    f"got num_downs {self.num_downs!r}"
                )
            if not isinstance(self.num_downs, int) or self.num_downs < MIN_DEPTH:
                raise ValueError(
                    f"num_downs must be an integer >= {MIN_DEPTH}, got {self.num_downs!r}"
                )

    @property
    def is_unet(self) -> bool:
        return self.netG in UNET_DEPTHS

    @property
    def depth(self) -> int:
        """Number of stride-2 downsamplings: a U-Net's ``num_downs``, 2 for a ResNet."""
        if not self.is_unet:
            return N_DOWNSAMPLING
        return self.num_downs if self.num_downs is not None else UNET_DEPTHS[self.netG]

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (``2**depth``: 256 for unet_256, 4 for a
        ResNet) to come out at their own size."""
        return 2**self.depth

    @property
    def default_crop_size(self) -> int:
        """The side the official code trains this generator at by default: a U-Net's
        ``2**depth`` (its name: unet_256 -> 256), 256 for a ResNet (``--crop_size``)."""
        return 2**self.depth if self.is_unet else RESNET_CROP_SIZE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        return cls(**data)


def _unet(cfg: GeneratorConfig) -> nn.Module:
    return UnetGenerator(
        cfg.input_nc,
        cfg.output_nc,
        cfg.depth,
        ngf=cfg.ngf,
        norm_layer=get_norm_layer(cfg.norm),
        use_bias=conv_bias_for(cfg.norm),
        use_dropout=cfg.use_dropout,
    )


def _resnet(cfg: GeneratorConfig) -> nn.Module:
    return ResnetGenerator(
        cfg.input_nc,
        cfg.output_nc,
        ngf=cfg.ngf,
        norm_layer=get_norm_layer(cfg.norm),
        use_bias=conv_bias_for(cfg.norm),
        use_dropout=cfg.use_dropout,
        n_blocks=RESNET_BLOCKS[cfg.netG],
    )


# --netG name -> builder of the (uninitialised) network; the official define_G's choices.
GENERATORS: Registry[Callable[[GeneratorConfig], nn.Module]] = Registry(
    "netG",
    {
        "unet_256": _unet,
        "unet_128": _unet,
        "resnet_9blocks": _resnet,
        "resnet_6blocks": _resnet,
    },
)


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    """Build the (uninitialised) generator that ``cfg`` describes."""
    return GENERATORS[cfg.netG](cfg)
