"""ImageMetrics: L1 in [-1, 1], PSNR and SSIM on [0, 1]."""

import math

import pytest
import torch

from pix2pix_core import ImageMetrics


def test_known_offset_gives_known_values():
    real = torch.rand(3, 3, 32, 32) * 1.6 - 0.8
    metrics = ImageMetrics()
    metrics.update(real + 0.1, real)
    metrics.update(real[:1] + 0.1, real[:1])  # accumulates across batches
    result = metrics.compute()
    assert set(result) == {"l1", "psnr", "ssim"}
    assert result["l1"] == pytest.approx(0.1, abs=1e-5)
    # 0.1 in [-1, 1] is 0.05 in [0, 1]: MSE 0.0025, PSNR 10 log10(1 / 0.0025).
    assert result["psnr"] == pytest.approx(10 * math.log10(1 / 0.0025), abs=1e-3)
    assert 0.9 < result["ssim"] <= 1.0


def test_identical_images_have_perfect_ssim_and_reset_clears():
    metrics = ImageMetrics()
    noise = torch.rand(2, 3, 32, 32) * 2 - 1
    metrics.update(noise, noise)
    assert metrics.compute()["ssim"] == pytest.approx(1.0)
    assert metrics.compute()["l1"] == 0.0
    metrics.reset()
    metrics.update(-noise, noise)
    assert metrics.compute()["ssim"] < 0.5


def test_moves_with_to_and_checks_shapes():
    metrics = ImageMetrics().to("cpu")
    with pytest.raises(ValueError, match="one shape"):
        metrics.update(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 8, 8))


def test_channels_last_inputs_give_the_same_values():
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    fake = (real + 0.2 * torch.rand_like(real)).clamp(-1, 1)
    plain, channels_last = ImageMetrics(), ImageMetrics()
    plain.update(fake, real)
    channels_last.update(
        fake.to(memory_format=torch.channels_last), real.to(memory_format=torch.channels_last)
    )
    assert channels_last.compute() == pytest.approx(plain.compute())
