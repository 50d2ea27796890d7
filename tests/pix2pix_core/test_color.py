"""The colorization task's Lab conversion is scikit-image's, which the official code uses."""

import numpy as np
import pytest
import torch

from pix2pix_core.color import lab_to_rgb, rgb_to_lab, to_lightness_and_colour, to_rgb
from pix2pix_core.transforms import to_tensor

skimage_color = pytest.importorskip("skimage.color")


def _photo() -> np.ndarray:
    """Every hue at several lightnesses and saturations, and black, white and greys."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 48, 3), np.uint8)
    image[:4] = np.linspace(0, 255, 48, dtype=np.uint8)[None, :, None]  # greys
    return image


def test_rgb_to_lab_is_scikit_images_rgb2lab():
    rgb = _photo()
    ours = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255)
    theirs = skimage_color.rgb2lab(rgb)
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), theirs, atol=1e-4)


def test_lab_to_rgb_is_scikit_images_lab2rgb_and_round_trips():
    rgb = _photo()
    lab = skimage_color.rgb2lab(rgb)
    ours = lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1)[None])
    np.testing.assert_allclose(
        ours[0].permute(1, 2, 0).numpy(), skimage_color.lab2rgb(lab), atol=1e-5
    )
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), rgb / 255, atol=1e-6)


def test_the_pair_is_the_official_colorization_datasets():
    rgb = _photo()
    lightness, colour = to_lightness_and_colour(to_tensor(rgb[None]))
    lab = skimage_color.rgb2lab(rgb).astype(np.float32)
    np.testing.assert_allclose(lightness[0, 0].numpy(), lab[..., 0] / 50 - 1, atol=1e-4)
    np.testing.assert_allclose(colour[0].permute(1, 2, 0).numpy(), lab[..., 1:] / 110, atol=1e-4)
    back = to_rgb(lightness, colour)
    assert back.shape == (1, 3, 48, 48)
    assert (back - to_tensor(rgb[None])).abs().max() < 1e-4
