"""U-Net generator, module-for-module the official ``UnetGenerator``.

The nesting of ``UnetSkipConnectionBlock``s and the order inside each ``nn.Sequential`` are
what make state dicts interchangeable with the official code (``model.model.1.model.3...``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pix2pix_core.networks.norm import NormFactory, check_norm, conv_bias_for, get_norm_layer

# Official --netG names -> number of downsamplings (2**depth = the input size it bottoms out at).
GENERATORS: dict[str, int] = {"unet_256": 8, "unet_128": 7}

# The five blocks that change width (ngf -> ngf*8 and the innermost) exist at every depth.
_MIN_DEPTH = 5


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """``netG``/``ngf``/``norm``/``use_dropout`` keep the official flag names and defaults.

    ``use_dropout=True`` is the pix2pix default (the official model sets it unless
    ``--no_dropout``). ``num_downs`` overrides the depth that ``netG`` implies.
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
            raise ValueError(f"unknown netG {self.netG!r}; valid generators: {sorted(GENERATORS)}")
        check_norm(self.norm)
        for name in ("ngf", "input_nc", "output_nc"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_downs is not None and (
            not isinstance(self.num_downs, int) or self.num_downs < _MIN_DEPTH
        ):
            raise ValueError(
                f"num_downs must be an integer >= {_MIN_DEPTH}, got {self.num_downs!r}"
            )

    @property
    def depth(self) -> int:
        """Number of stride-2 downsamplings; inputs must be divisible by ``2**depth``."""
        return self.num_downs if self.num_downs is not None else GENERATORS[self.netG]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        return cls(**data)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down -> submodule -> up, with the input concatenated to the output.

    The outermost block returns its output without the skip; the innermost has no submodule.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        *,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm_layer: NormFactory,
        use_bias: bool,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = norm_layer(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = norm_layer(outer_nc)

        if outermost:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(
                inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias
            )
            layers = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(
                inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias
            )
            layers = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """Built from the innermost block outwards, exactly as the official constructor does."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        *,
        ngf: int = 64,
        norm_layer: NormFactory,
        use_bias: bool,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        common = {"norm_layer": norm_layer, "use_bias": use_bias}
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, **common)
        # The extra ngf*8 levels are where the paper's dropout (the only noise source) lives.
        for _ in range(num_downs - _MIN_DEPTH):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout, **common
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, **common)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, **common)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, **common)
        # The official code hands norm_layer to the outermost block as well, so its first conv
        # has no bias under batch norm; the parameter counts and keys depend on that.
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, **common
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_generator(cfg: GeneratorConfig) -> UnetGenerator:
    """Build the (uninitialised) generator that ``cfg`` describes."""
    return UnetGenerator(
        cfg.input_nc,
        cfg.output_nc,
        cfg.depth,
        ngf=cfg.ngf,
        norm_layer=get_norm_layer(cfg.norm),
        use_bias=conv_bias_for(cfg.norm),
        use_dropout=cfg.use_dropout,
    )
