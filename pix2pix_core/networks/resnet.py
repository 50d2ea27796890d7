"""ResNet generator, module-for-module the official ``ResnetGenerator`` (Johnson et al.'s
fast-neural-style network): a 7x7 stem, two stride-2 downsamplings, ``n_blocks`` residual
blocks at 4*ngf channels, two transposed-convolution upsamplings and a 7x7 head.

Every layer sits at the official index of one flat ``nn.Sequential`` (``model.10.conv_block.1``
...), and the paddings and dropout take their slots as in the official code, so state dicts
are interchangeable with official ``*_net_G.pth`` files.
"""

from __future__ import annotations

import torch
from torch import nn

from pix2pix_core.networks.norm import NormFactory

# The official ResnetBlock's padding types: a padding layer before each 3x3 conv, or the
# conv's own zero padding. define_G always builds "reflect".
PADDINGS: dict[str, type[nn.Module] | None] = {
    "reflect": nn.ReflectionPad2d,
    "replicate": nn.ReplicationPad2d,
    "zero": None,
}

# Stride-2 downsamplings: input sides must be multiples of 2**2 to come back at their size.
N_DOWNSAMPLING = 2


class ResnetBlock(nn.Module):
    """``x + conv_block(x)``: pad, 3x3 conv, norm, ReLU, [dropout 0.5], pad, 3x3 conv, norm."""

    def __init__(
        self,
        dim: int,
        *,
        padding_type: str = "reflect",
        norm_layer: NormFactory,
        use_dropout: bool,
        use_bias: bool,
    ) -> None:
        super().__init__()
        if padding_type not in PADDINGS:
            raise ValueError(
                f"unknown padding_type {padding_type!r}; valid types: {', '.join(PADDINGS)}"
            )
        pad, conv_padding = PADDINGS[padding_type], 0 if PADDINGS[padding_type] else 1

        def padded_conv() -> list[nn.Module]:
            conv = nn.Conv2d(dim, dim, kernel_size=3, padding=conv_padding, bias=use_bias)
            return [pad(1), conv] if pad else [conv]

        layers = [*padded_conv(), norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [*padded_conv(), norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The official constructor's layer list, in its order."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        *,
        ngf: int = 64,
        norm_layer: NormFactory,
        use_bias: bool,
        use_dropout: bool = False,
        n_blocks: int = 6,
        padding_type: str = "reflect",
    ) -> None:
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks!r}")
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        for i in range(N_DOWNSAMPLING):
            mult = 2**i
            layers += [
                nn.Conv2d(
                    ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias
                ),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        width = ngf * 2**N_DOWNSAMPLING
        layers += [
            ResnetBlock(
                width,
                padding_type=padding_type,
                norm_layer=norm_layer,
                use_dropout=use_dropout,
                use_bias=use_bias,
            )
            for _ in range(n_blocks)
        ]
        for i in range(N_DOWNSAMPLING):
            mult = 2 ** (N_DOWNSAMPLING - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult,
                    ngf * mult // 2,
                    kernel_size=3,
                    stride=2,
                    padding=1,
                    output_padding=1,
                    bias=use_bias,
                ),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        # The head has a bias whatever the norm, as in the official code.
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
