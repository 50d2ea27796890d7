"""U-Net generator, module-for-module the official ``UnetGenerator``.

The nesting of ``UnetSkipConnectionBlock``s and the order inside each ``nn.Sequential`` are
what make state dicts interchangeable with the official code (``model.model.1.model.3...``).
"""

from __future__ import annotations

import torch
from torch import nn

from pix2pix_core.networks.norm import NormFactory

# The five blocks that change width (ngf -> ngf*8 and the innermost) exist at every depth.
MIN_DEPTH = 5


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
        for _ in range(num_downs - MIN_DEPTH):
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
