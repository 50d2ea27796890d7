"""The test-time generator: the official test's semantics, and outputs that do not depend on
the batch an image is in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pix2pix_core import GeneratorConfig, ImageMetrics, build_generator
from pix2pix_core.color import rgb_to_lab, to_lightness_and_colour
from pix2pix_core.geometry import resample
from pix2pix_core.inference import (
    default_overlap,
    from_state_dict,
    sample_seeds,
    translate_uint8,
    translated_pairs,
)
from pix2pix_core.transforms import to_tensor

SIZE = 128  # for a U-Net of depth 7: two of its levels have dropout


def _trained_weights(use_dropout: bool = True, **channels: int) -> tuple[GeneratorConfig, dict]:
    """Weights with batch-norm statistics and affines of their own, as after training."""
    torch.manual_seed(0)
    config = GeneratorConfig(num_downs=7, ngf=4, use_dropout=use_dropout, **channels)
    net = build_generator(config)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return config, net.state_dict()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@torch.inference_mode()
def test_eval_mode_is_the_official_eval():
    config, state = _trained_weights()
    official = build_generator(config)
    official.load_state_dict(state)
    official.eval()
    x = _images(3)
    ours = from_state_dict(config, state, eval_mode=True)
    torch.testing.assert_close(ours(x), official(x), rtol=0, atol=1e-5)


@torch.inference_mode()
def test_the_papers_mode_without_dropout_is_the_official_test_one_image_at_a_time():
    config, state = _trained_weights(use_dropout=False)
    official = build_generator(config)
    official.load_state_dict(state)
    official.train()  # the official test without --eval, at its batch size of 1
    x = _images(4)
    each = torch.cat([official(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(from_state_dict(config, state, eval_mode=False)(x), each)


@torch.inference_mode()
def test_with_dropout_an_output_depends_on_its_image_alone():
    config, state = _trained_weights()
    generator = from_state_dict(config, state, eval_mode=False)
    assert len(generator.dropouts) == 2  # the paper's noise: dropout in the inner levels
    x = _images(4)
    alone = torch.cat([generator(x[i : i + 1]) for i in range(4)])
    together = generator(x)
    reordered = generator(x.flip(0)).flip(0)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reordered, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(generator(x), together, rtol=0, atol=0)  # and again, the same
    # The dropout is on: another seed draws other masks and gives other outputs.
    other = from_state_dict(config, state, eval_mode=False, seed=1)(x)
    assert (other - together).abs().max() > 1e-3
    assert sample_seeds(x) != sample_seeds(x, seed=1)
    assert len(set(sample_seeds(x))) == 4


def test_the_training_model_is_shared_not_copied_and_left_as_it_was():
    config, state = _trained_weights()
    live = build_generator(config)
    live.load_state_dict(state)
    before = {k: v.clone() for k, v in live.state_dict().items()}
    generator = from_state_dict(config, live.state_dict(), eval_mode=False)
    shared = {p.data_ptr() for p in live.parameters()}
    assert any(p.data_ptr() in shared for p in generator.parameters())
    with torch.inference_mode():
        generator(_images(2))
    for key, value in live.state_dict().items():  # running statistics untouched
        assert torch.equal(value, before[key]), key
    assert live.training


@pytest.mark.parametrize("eval_mode", [True, False])
def test_translated_pairs_are_resampled_once_and_do_not_depend_on_the_batch_size(eval_mode):
    config, state = _trained_weights()
    generator = from_state_dict(config, state, eval_mode=eval_mode)
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 256, (140, 150, 3), np.uint8),) * 2 for _ in range(5)]
    runs = {}
    with torch.inference_mode():
        for batch_size in (1, 2, 5):
            out = list(translated_pairs(generator, pairs, tile=SIZE, batch_size=batch_size))
            runs[batch_size] = [torch.cat(parts) for parts in zip(*out, strict=True)]
    for batch_size in (2, 5):
        for ours, single in zip(runs[batch_size], runs[1], strict=True):
            torch.testing.assert_close(ours, single, rtol=1e-5, atol=1e-5)
    real_a = runs[1][0]
    expected = to_tensor(np.stack([resample(a, SIZE, SIZE) for a, _ in pairs]))
    torch.testing.assert_close(real_a, expected, rtol=0, atol=0)  # one PIL resample


COLORIZATION = {"input_nc": 1, "output_nc": 2}  # L in, ab out


def _lab(rgb: np.ndarray) -> torch.Tensor:
    """Lab (L in 0..100) of a uint8 H x W x 3 image, 1 x 3 x H x W."""
    return rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255)


@torch.inference_mode()
def test_colorization_pairs_are_scored_in_rgb_and_do_not_depend_on_the_batch_size():
    config, state = _trained_weights(**COLORIZATION)
    generator = from_state_dict(config, state, eval_mode=False)
    rng = np.random.default_rng(0)
    pairs = [(image, image) for image in rng.integers(0, 256, (4, 140, 150, 3), np.uint8)]
    runs, scores = {}, {}
    for batch_size in (1, 4):
        out = list(
            translated_pairs(generator, pairs, tile=SIZE, batch_size=batch_size, colorization=True)
        )
        metrics = ImageMetrics()
        for _, fake_b, real_b in out:
            metrics.update(fake_b, real_b)
        runs[batch_size] = [torch.cat(parts) for parts in zip(*out, strict=True)]
        scores[batch_size] = {k: float(v) for k, v in metrics.compute().items()}
    assert scores[4] == pytest.approx(scores[1], rel=1e-5)
    for ours, single in zip(runs[4], runs[1], strict=True):
        torch.testing.assert_close(ours, single, rtol=1e-5, atol=1e-5)
    real_a, fake_b, real_b = runs[1]
    assert real_a.shape == fake_b.shape == real_b.shape == (4, 3, SIZE, SIZE)  # RGB, all three
    expected = to_tensor(np.stack([resample(b, SIZE, SIZE) for _, b in pairs]))
    torch.testing.assert_close(real_b, expected, rtol=0, atol=0)  # the picture itself
    # The input is shown as what the generator saw: the picture's lightness, in grey.
    torch.testing.assert_close(real_a[:, :1].expand(-1, 3, -1, -1), real_a, rtol=0, atol=1e-3)
    assert (fake_b[:, 0] - fake_b[:, 2]).abs().mean() > 1e-2  # the output has colour


@torch.inference_mode()
def test_translate_uint8_colours_rgb_pictures_and_keeps_their_lightness():
    config, state = _trained_weights(**COLORIZATION)
    generator = from_state_dict(config, state, eval_mode=False)
    rng = np.random.default_rng(1)
    # Mid-tones and a muted colour (ab within +-11): nothing leaves the sRGB gamut, where
    # clipping would change the lightness.
    images = [rng.integers(70, 190, shape, np.uint8) for shape in ((SIZE, SIZE, 3), (96, 200, 3))]
    outputs = list(
        translate_uint8(
            lambda x: 0.1 * generator(x),
            images,
            tile=SIZE,
            overlap=default_overlap(SIZE),
            batch_size=3,
            colorization=True,
        )
    )
    for image, out in zip(images, outputs, strict=True):
        assert out.shape == image.shape and out.dtype == np.uint8
        lightness = (_lab(out) - _lab(image))[:, 0]
        assert lightness.abs().max() < 1.0  # uint8 rounding
    # The colour is the generator's, given the picture's lightness (one tile: one forward).
    lightness, _ = to_lightness_and_colour(to_tensor(images[0][None]))
    colour = 0.1 * generator(lightness) * 110
    assert (_lab(outputs[0])[:, 1:] - colour).abs().max() < 2.0
