"""The generator at test time: one way for validation, evaluation, the registered model and
bulk translation, so that their numbers and outputs agree.

Two semantics, as in the official test:

- the paper's (the official test without `--eval`, this project's default): dropout on and
  batch norm with the statistics of each image. The official test runs one image at a
  time; here every BatchNorm computes each sample's own statistics (instance norm with
  the BatchNorm's affine) and every Dropout draws each sample's mask from a seed made of
  that sample's pixels, so an output never depends on the batch it is in, the worker that
  ran it or the order of a split: the same image gives the same output everywhere.
- `eval_mode` (`--eval`): dropout off and batch norm with its running statistics, folded
  into the convolution before it (the same affine maths in one pass).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from pix2pix_core.color import to_lightness_and_colour, to_rgb
from pix2pix_core.geometry import resample, resized_size
from pix2pix_core.networks import GeneratorConfig, build_generator
from pix2pix_core.tiling import translate_tiled
from pix2pix_core.transforms import to_tensor, to_uint8

_MASK_SEED_MIX = 0x9E3779B97F4A7C15  # spreads (sample seed, layer) over the seed space


class PerSampleBatchNorm(nn.Module):
    """BatchNorm in training mode as at batch size 1: each sample's own statistics."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


class PerSampleDropout(nn.Module):
    """Dropout whose mask for each sample comes from that sample's seed (set by
    `TestTimeGenerator` before each forward), scaled by 1 / (1 - p) as nn.Dropout is."""

    def __init__(self, p: float, layer: int) -> None:
        super().__init__()
        self.p, self.layer = p, layer
        self.seeds: Sequence[int] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.seeds) != x.shape[0]:
            raise RuntimeError(f"{len(self.seeds)} dropout seeds for a batch of {x.shape[0]}")
        return x * self._masks(tuple(x.shape[1:]), x.device, x.dtype)

    def _masks(self, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype):
        keep = 1.0 - self.p
        masks = []
        for seed in self.seeds:
            generator = torch.Generator().manual_seed((seed * _MASK_SEED_MIX + self.layer) % 2**63)
            masks.append(torch.bernoulli(torch.full(shape, keep), generator=generator))
        return (torch.stack(masks) / keep).to(device, dtype)


def sample_seeds(x: torch.Tensor, seed: int = 0) -> list[int]:
    """One seed per sample of NCHW `x`, from its values (and `seed`)."""
    host = x.detach().to("cpu", torch.float32).contiguous()
    return [zlib.crc32(sample.numpy().tobytes(), seed & 0xFFFFFFFF) for sample in host]


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """Fold each BatchNorm into the convolution before it (in place; eval mode)."""
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                transpose = isinstance(conv, nn.ConvTranspose2d)
                seq[i] = fuse_conv_bn_eval(conv, bn, transpose=transpose)
                seq[i + 1] = nn.Identity()
    return module


def _per_sample(module: nn.Module, dropouts: list[PerSampleDropout]) -> None:
    """Replace BatchNorm2d and Dropout in `module` (in place) by their per-sample forms."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, PerSampleBatchNorm(child))
        elif isinstance(child, nn.Dropout):
            dropouts.append(PerSampleDropout(child.p, layer=len(dropouts)))
            setattr(module, name, dropouts[-1])
        else:
            _per_sample(child, dropouts)


class TestTimeGenerator(nn.Module):
    """A generator set up for test time (see the module docstring); NCHW in, NCHW out.

    `generator` is changed in place: give it a module of its own (`from_state_dict`). In
    the paper's semantics its parameters are used as they are, so a generator built on a
    training model's tensors follows the training. `seed` changes every dropout mask.
    """

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, generator: nn.Module, *, eval_mode: bool, seed: int = 0) -> None:
        super().__init__()
        self.eval_mode, self.seed = eval_mode, seed
        self.dropouts: list[PerSampleDropout] = []
        if eval_mode:
            generator.eval()
            fold_batch_norm(generator)
        else:
            generator.train()  # nothing left that trains: norms and dropouts are replaced
            _per_sample(generator, self.dropouts)
        generator.requires_grad_(False)
        self.generator = generator

    def forward(self, x: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """G(x); `seeds` (one per sample) default to `sample_seeds(x, self.seed)`: pass
        them when x is on a device where reading it back costs a copy you already have."""
        if self.dropouts:
            seeds = list(seeds) if seeds is not None else sample_seeds(x, self.seed)
            for dropout in self.dropouts:
                dropout.seeds = seeds
        return self.generator(x)

    def compiled(self, mode: str = "default") -> nn.Module:
        """`torch.compile` of this generator, its dropout masks made outside the graph
        (seeded host generators: nothing to capture).

        Not `@torch.compiler.disable` on `PerSampleDropout._masks`: that imports
        torch._dynamo when this module is imported, about 1.3 s of start-up in every
        process that runs a model, compiled or not.
        """
        for dropout in self.dropouts:
            dropout._masks = torch.compiler.disable(dropout._masks)
        return torch.compile(self, mode=mode)


def from_state_dict(
    config: GeneratorConfig, state_dict: dict[str, torch.Tensor], *, eval_mode: bool, seed: int = 0
) -> TestTimeGenerator:
    """The test-time generator on `state_dict`'s tensors, shared, not copied (a training
    model's, or read-only arrays of an object store)."""
    with torch.device("meta"):  # no random initialisation of weights about to be replaced
        module = build_generator(config)
    module.load_state_dict(state_dict, assign=True)
    return TestTimeGenerator(module, eval_mode=eval_mode, seed=seed)


def default_overlap(tile: int) -> int:
    """How much neighbouring tiles overlap unless told: a quarter of a tile."""
    return tile // 4


def translate_uint8(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: Iterable[np.ndarray],
    *,
    tile: int,
    overlap: int,
    batch_size: int,
    colorization: bool = False,
) -> Iterator[np.ndarray]:
    """uint8 H x W x C images (at the scale the model takes them) -> translated uint8
    images, in order, the tiles of consecutive images sharing batches (tiling.py).

    `colorization`: RGB images in; the generator sees their lightness and gives the colour
    channels, shown back in RGB with that lightness (pix2pix_core.color).
    """
    lightness: deque[torch.Tensor] = deque()

    def inputs() -> Iterator[torch.Tensor]:
        for image in images:
            x = to_tensor(image)  # copies read-only buffers itself
            if colorization:
                x = to_lightness_and_colour(x[None])[0][0]
                lightness.append(x)
            yield x

    for out in translate_tiled(
        forward, inputs(), tile=tile, overlap=overlap, batch_size=batch_size
    ):
        if colorization:
            out = to_rgb(lightness.popleft()[None], out[None].cpu())[0]
        yield to_uint8(out)


def translated_pairs(
    generator: TestTimeGenerator,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    tile: int,
    batch_size: int,
    preprocess: str = "resize_and_crop",
    colorization: bool = False,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(real_a, fake_b, real_b) of each uint8 (A, B) pair, float 1 x C x H x W on `device`:
    both images resampled once, from what they are to the size the official test gives them
    (its `load_size` is the model's `tile`, so resize_and_crop makes them `tile` x `tile`),
    and A translated (in tiles of `tile` where larger; `batch_size` tiles per forward).
    `colorization`: A and B are the RGB image; the generator gets its lightness, and the
    three are yielded in RGB (the lightness as grey), to be scored as pictures.

    Validation and evaluation both score what this yields, so their numbers agree, and
    they do not depend on `batch_size` (see the module docstring).
    """
    pending: deque[tuple[torch.Tensor, torch.Tensor]] = deque()

    def inputs() -> Iterator[torch.Tensor]:
        for a, b in pairs:
            width, height = resized_size(
                a.shape[1], a.shape[0], preprocess=preprocess, load_size=tile
            )
            real_a = to_tensor(resample(a, height, width))[None]
            real_b = to_tensor(resample(b, height, width))[None]
            if colorization:
                real_a = to_lightness_and_colour(real_a)[0]
            pending.append((real_a, real_b))
            yield real_a[0]

    def forward(x: torch.Tensor) -> torch.Tensor:
        return generator(x.to(device), sample_seeds(x, generator.seed)).float()

    outputs = translate_tiled(
        forward, inputs(), tile=tile, overlap=default_overlap(tile), batch_size=batch_size
    )
    for fake_b in outputs:
        real_a, real_b = pending.popleft()
        fake_b = fake_b[None]
        if colorization:
            fake_b = to_rgb(real_a, fake_b.cpu())
            real_a = to_rgb(real_a, torch.zeros_like(fake_b[:, :2]))
        yield real_a.to(device), fake_b.to(device), real_b.to(device)
