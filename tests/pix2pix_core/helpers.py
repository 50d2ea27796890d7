"""Tiny models and images shared by the core tests."""

import torch

from pix2pix_core import DiscriminatorConfig, GeneratorConfig, Pix2Pix

SIZE = 32


def tiny_model(seed: int = 0, *, num_downs: int = 5, norm: str = "batch", **training) -> Pix2Pix:
    return Pix2Pix(
        GeneratorConfig(ngf=8, num_downs=num_downs, norm=norm),
        DiscriminatorConfig(ndf=8, norm=norm),
        seed=seed,
        **training,
    )


def image_pair(
    batch: int = 2, seed: int = 0, size: int = SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random A and a B that is a fixed pixelwise function of it (something to learn
    that the stride-2 first layer can still see)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 8, size // 8, generator=g) * 2 - 1
    a = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    b = torch.tanh(a.flip(1) * 1.5)
    return a, b
