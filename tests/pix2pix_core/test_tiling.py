"""Tiled inference: exact where one tile suffices, seamless where tiles meet."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pix2pix_core import GeneratorConfig, build_generator
from pix2pix_core.tiling import TileGrid, merge, split, tile_starts, translate_tiled


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@pytest.mark.parametrize("length", [1, 31, 32, 33, 57, 64, 100, 257])
def test_tiles_cover_the_side_with_at_least_the_overlap(length):
    starts = tile_starts(length, 32, 8)
    assert starts[0] == 0
    assert starts[-1] + 32 >= length
    assert all(b - a <= 32 - 8 for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize("size", [(1, 1), (5, 40), (32, 32), (40, 70), (97, 33)])
def test_split_then_merge_is_the_identity(size):
    image = torch.rand(3, *size)
    grid = TileGrid(*size, tile=32, overlap=8)
    out = merge(split(image, grid), grid)
    assert out.shape == image.shape
    torch.testing.assert_close(out, image, rtol=0, atol=1e-6)


def _tiny_generator() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = GeneratorConfig(netG="unet_128", num_downs=5, ngf=8, use_dropout=False)
    return build_generator(cfg).eval()


@torch.inference_mode()
def test_an_image_that_fits_one_tile_is_exactly_the_plain_pass():
    model = _tiny_generator()
    image = torch.rand(3, 32, 32) * 2 - 1
    (tiled,) = translate_tiled(model, [image], tile=32, overlap=8, batch_size=1)
    assert torch.equal(tiled, model(image[None])[0])


@torch.inference_mode()
def test_images_of_any_size_keep_their_size():
    model = _tiny_generator()
    images = [torch.rand(3, h, w) * 2 - 1 for h, w in [(20, 45), (32, 32), (70, 96)]]
    outs = translate_tiled(model, images, tile=32, overlap=8, batch_size=3)
    assert [o.shape for o in outs] == [i.shape for i in images]


def _vignette(x: torch.Tensor) -> torch.Tensor:
    """A model with strong border effects: each tile darkened towards its edges."""
    t = x.shape[-1]
    ramp = torch.sin(math.pi * (torch.arange(t) + 0.5) / t)
    return x + 0.5 * (torch.outer(ramp, ramp) - 1)


def _largest_step(image: torch.Tensor) -> float:
    """The largest jump between neighbouring pixels, across rows or columns."""
    dy = (image[:, 1:] - image[:, :-1]).abs().max()
    dx = (image[:, :, 1:] - image[:, :, :-1]).abs().max()
    return float(max(dx, dy))


def test_no_seam_where_tiles_meet_on_a_smooth_input():
    h, w = 80, 112
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    smooth = torch.stack([xx, yy, (xx + yy) / 2]) * 0.5
    (blended,) = translate_tiled(_vignette, [smooth], tile=32, overlap=12, batch_size=4)
    # The window-blended tiles change no faster than one tile's own vignette does...
    within_a_tile = _largest_step(_vignette(smooth[:, :32, :32]))
    assert _largest_step(blended) <= within_a_tile + 1e-6
    # ...while the same tiles butted together without blending jump at every border.
    (butted,) = translate_tiled(_vignette, [smooth], tile=32, overlap=0, batch_size=4)
    assert _largest_step(butted) > 3 * within_a_tile


def test_outputs_stream_in_input_order_as_each_image_completes():
    consumed = []

    def images():
        for i in range(6):
            consumed.append(i)
            yield torch.full((3, 40, 40), float(i))  # 4 tiles each

    seen = []
    for k, out in enumerate(translate_tiled(_identity, images(), tile=32, overlap=8, batch_size=3)):
        torch.testing.assert_close(out, torch.full((3, 40, 40), float(k)))
        seen.append(len(consumed))
    # Image k is out once its last tile has run: never more than one image read ahead.
    assert all(n <= k + 2 for k, n in enumerate(seen))
