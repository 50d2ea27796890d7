"""Image conversions and the paper's paired random jitter.

Images travel as uint8 NHWC arrays (what decoders produce) and enter the networks as float
NCHW in [-1, 1], the official ``ToTensor`` + ``Normalize((0.5,), (0.5,))``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

RESIZE_MODES = ("bicubic", "bilinear")


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC (or one HWC image) -> float32 NCHW (or CHW) in [-1, 1]."""
    x = images
    if isinstance(x, np.ndarray):
        # Arrays from Arrow are read-only, which torch warns about: copy only those.
        x = torch.from_numpy(np.require(x, requirements=["C", "W"]))
    if x.dtype != torch.uint8 or x.ndim not in (3, 4):
        raise ValueError(
            f"to_tensor expects uint8 images shaped NHWC or HWC, got {x.dtype} {tuple(x.shape)}"
        )
    return x.movedim(-1, -3).float().div(127.5).sub(1.0).contiguous()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float NCHW (or CHW) in [-1, 1] -> uint8 NHWC (or HWC) numpy array.

    Rounds to the nearest level (the official ``tensor2im`` truncates), so that
    ``to_uint8(to_tensor(x)) == x`` exactly.
    """
    if images.ndim not in (3, 4) or not images.is_floating_point():
        raise ValueError(
            f"to_uint8 expects float images shaped NCHW or CHW, got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    x = images.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round()
    return x.to(torch.uint8).movedim(-3, -1).cpu().numpy()


def paired_random_jitter(
    a: torch.Tensor,
    b: torch.Tensor,
    crop_size: int | None,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``crop_size`` crop and (if ``flip``) random horizontal flip of NCHW batches.

    Each sample draws its own crop and flip, and A and B of a sample get the same ones: the
    pair must stay aligned pixel for pixel. The paper resizes to 286 first (done when the
    dataset is prepared) and crops 256 here. ``crop_size`` None: no crop, only the flip
    (the preprocess modes without "crop").
    """
    if a.ndim != 4 or b.ndim != 4 or a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"a {tuple(a.shape)} and b {tuple(b.shape)} must be NCHW batches of the same size"
        )
    n, _, height, width = a.shape
    if crop_size is not None and not 0 < crop_size <= min(height, width):
        raise ValueError(f"crop_size {crop_size!r} does not fit images of {height}x{width}")
    crop_h, crop_w = (height, width) if crop_size is None else (crop_size, crop_size)
    # Draw on the CPU so one generator serves inputs on any device.
    tops = torch.randint(0, height - crop_h + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, width - crop_w + 1, (n,), generator=generator).tolist()
    flips = (torch.rand(n, generator=generator) < 0.5).tolist() if flip else [False] * n
    out_a, out_b = [], []
    for i, (top, left, mirror) in enumerate(zip(tops, lefts, flips, strict=True)):
        window = (slice(None), slice(top, top + crop_h), slice(left, left + crop_w))
        crop_a, crop_b = a[i][window], b[i][window]
        if mirror:
            crop_a, crop_b = crop_a.flip(-1), crop_b.flip(-1)
        out_a.append(crop_a)
        out_b.append(crop_b)
    return torch.stack(out_a), torch.stack(out_b)


def resize(x: torch.Tensor, size: int | tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize float NCHW images in [-1, 1] to ``size`` (an int gives a square).

    Bicubic with antialiasing, like the official PIL ``Resize(..., BICUBIC)``; the result is
    clamped because bicubic overshoots at edges.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; valid modes: {list(RESIZE_MODES)}")
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"resize expects float NCHW images, got {x.dtype} {tuple(x.shape)}")
    target = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[2:]) == target:
        return x
    out = F.interpolate(x, size=target, mode=mode, align_corners=False, antialias=True)
    return out.clamp(-1.0, 1.0)
