"""The paper's colorization task (the official `--dataset_mode colorization`): L in, ab out.

An RGB image becomes a pair in CIE Lab (D65, as scikit-image's rgb2lab, which the official
code uses): A is the lightness L scaled to [-1, 1] (L / 50 - 1), B the colour channels ab
scaled by 1 / 110. A translation is shown back in RGB: its L with the generator's ab.
"""

from __future__ import annotations

import torch

# sRGB (D65) -> XYZ, and the D65 white point, as scikit-image.
_RGB_TO_XYZ = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_EPSILON, _KAPPA = 0.008856, 7.787  # CIE's linear segment near black
L_SCALE, AB_SCALE = 50.0, 110.0  # the official colorization_dataset's scales


def _channels(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3 x 3 matrix to the channels of NCHW `x`."""
    return torch.einsum("ij,njhw->nihw", matrix.to(x), x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Float NCHW RGB in [0, 1] -> NCHW Lab (L in [0, 100])."""
    x = rgb.double().clamp(0, 1)
    linear = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = _channels(_RGB_TO_XYZ, linear) / _WHITE.to(x).view(1, 3, 1, 1)
    f = torch.where(xyz > _EPSILON, xyz.clamp(min=0) ** (1 / 3), _KAPPA * xyz + 16 / 116)
    lightness = 116 * f[:, 1:2] - 16
    a = 500 * (f[:, 0:1] - f[:, 1:2])
    b = 200 * (f[:, 1:2] - f[:, 2:3])
    return torch.cat([lightness, a, b], 1).to(rgb.dtype)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """NCHW Lab -> float NCHW RGB in [0, 1] (colours outside sRGB clipped)."""
    x = lab.double()
    fy = (x[:, 0:1] + 16) / 116
    fx = fy + x[:, 1:2] / 500
    fz = (fy - x[:, 2:3] / 200).clamp(min=0)
    f = torch.cat([fx, fy, fz], 1)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16 / 116) / _KAPPA)
    xyz = xyz * _WHITE.to(x).view(1, 3, 1, 1)
    linear = _channels(torch.linalg.inv(_RGB_TO_XYZ), xyz).clamp(min=0)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0, 1).to(lab.dtype)


def to_lightness_and_colour(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NCHW RGB in [-1, 1] (as `transforms.to_tensor` gives) -> (A, B) of the colorization
    pair: L / 50 - 1 (1 channel) and ab / 110 (2 channels)."""
    lab = rgb_to_lab((rgb.float() + 1) / 2)
    return lab[:, :1] / L_SCALE - 1, lab[:, 1:] / AB_SCALE


def to_rgb(lightness: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """(A, B) of the colorization pair -> NCHW RGB in [-1, 1]."""
    lab = torch.cat([(lightness.float() + 1) * L_SCALE, colour.float() * AB_SCALE], 1)
    return lab_to_rgb(lab) * 2 - 1
