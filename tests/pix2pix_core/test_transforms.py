"""Conversions, paired jitter and eval resize."""

import numpy as np
import pytest
import torch

from pix2pix_core import paired_random_jitter, resize, to_tensor, to_uint8


def test_uint8_round_trip_is_exact():
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
    x = to_tensor(images)
    assert x.shape == (2, 3, 8, 6) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert to_tensor(np.array([[[0, 255, 128]]], dtype=np.uint8)).flatten().tolist() == [
        -1.0,
        1.0,
        pytest.approx(128 / 127.5 - 1, abs=1e-6),
    ]
    np.testing.assert_array_equal(to_uint8(x), images)
    np.testing.assert_array_equal(to_uint8(to_tensor(images[0])), images[0])


def test_to_tensor_rejects_floats():
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(np.zeros((4, 4, 3), dtype=np.float32))


def test_jitter_crops_and_flips_a_and_b_alike():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(16, 3, 40, 40) * 2 - 1
    b = -a[:, :1]  # B keeps a pixelwise relation to A, with another channel count
    out_a, out_b = paired_random_jitter(a, b, 32, flip=True, generator=g)
    assert out_a.shape == (16, 3, 32, 32) and out_b.shape == (16, 1, 32, 32)
    torch.testing.assert_close(out_b, -out_a[:, :1], rtol=0, atol=0)

    # Each sample draws its own window and flip; find them to check both vary.
    found = set()
    for i in range(16):
        for mirror in (False, True):
            src = a[i].flip(-1) if mirror else a[i]
            for top in range(9):
                for left in range(9):
                    window = src[:, top : top + 32, left : left + 32]
                    if torch.equal(window, out_a[i]):
                        found.add((top, left, mirror))
    assert len({m for _, _, m in found}) == 2  # some flipped, some not
    assert len({(t, left) for t, left, _ in found}) > 1  # crops differ between samples


def test_jitter_is_reproducible_and_identity_without_room():
    a, b = torch.rand(4, 3, 36, 36), torch.rand(4, 3, 36, 36)
    first = paired_random_jitter(a, b, 32, generator=torch.Generator().manual_seed(1))
    second = paired_random_jitter(a, b, 32, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    same_a, same_b = paired_random_jitter(a, b, 36, flip=False)
    assert torch.equal(same_a, a) and torch.equal(same_b, b)


def test_jitter_errors():
    a = torch.zeros(2, 3, 16, 16)
    with pytest.raises(ValueError, match="crop_size 32"):
        paired_random_jitter(a, a, 32)
    with pytest.raises(ValueError, match="same size"):
        paired_random_jitter(a, torch.zeros(2, 3, 16, 8), 8)


def test_resize():
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    out = resize(x, 32)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    assert resize(x, (16, 24), mode="bilinear").shape == (2, 3, 16, 24)
    assert resize(x, (64, 48)) is x
    constant = torch.full((1, 3, 20, 20), 0.5)
    torch.testing.assert_close(resize(constant, 10), torch.full((1, 3, 10, 10), 0.5))
    with pytest.raises(ValueError, match="'nearest'"):
        resize(x, 32, mode="nearest")
