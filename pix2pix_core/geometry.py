"""At what size an image meets the model: the official `--preprocess` modes and the scale
rule of test time.

Training (the official `get_transform`): the image is resized as `--preprocess` says, then
`crop_size` is cropped from it where the mode's name has "crop":

    resize_and_crop       load_size x load_size (the paper's 286 -> 256), then a crop
    crop                  the image's own size, then a crop
    scale_width           width load_size, height to keep the aspect; no crop
    scale_width_and_crop  the same, then a crop
    none                  its own size, rounded to multiples of 4; no crop

Test time resizes the same way, so that the model sees the scale it was trained at, and
goes through the generator in tiles of `crop_size` (one tile: the plain forward).
`resample` brings an image to that size and back, the one resampler wherever the model
runs (torch-free, so that the Ray tasks that only decode and resize never import torch).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
SCALE_MODES = ("auto", "resize", "tile")  # translate's --resize / --tile / the default
_POWER_BASE = 4  # the official __make_power_2's base


def check_preprocess(preprocess: str) -> str:
    if preprocess not in PREPROCESS_MODES:
        raise ValueError(
            f"unknown preprocess {preprocess!r}; valid modes: {list(PREPROCESS_MODES)}"
        )
    return preprocess


def crops(preprocess: str) -> bool:
    """Whether training crops `crop_size` from the resized image."""
    return "crop" in check_preprocess(preprocess).split("_")


def resized_size(width: int, height: int, *, preprocess: str, load_size: int) -> tuple[int, int]:
    """(width, height) the official code resizes an image of `width` x `height` to before
    any crop (its scale_width keeps at least crop_size in height; here training checks that
    the crop fits instead)."""
    mode = check_preprocess(preprocess)
    if mode == "resize_and_crop":
        return load_size, load_size
    if mode in ("scale_width", "scale_width_and_crop"):
        if width == load_size:
            return width, height
        return load_size, max(1, int(load_size * height / width))
    if mode == "none":
        return (
            max(_POWER_BASE, round(width / _POWER_BASE) * _POWER_BASE),
            max(_POWER_BASE, round(height / _POWER_BASE) * _POWER_BASE),
        )
    return width, height  # crop: its own size


def model_input_size(
    width: int,
    height: int,
    *,
    mode: str,
    tile: int,
    load_size: int | None,
    preprocess: str = "resize_and_crop",
) -> tuple[int, int]:
    """(width, height) an image is resampled to before the generator at test time.

    - "auto": the scale the model was trained at: the resize its training applied
      (`preprocess` to `load_size`); a model that recorded no `load_size` (an official
      `*_net_G.pth`) gets the official test's resize to `tile` x `tile`.
    - "resize": `tile` x `tile`, the official test's resize, whatever the model's record.
    - "tile": the image's own size (a model trained at that scale).
    """
    if mode not in SCALE_MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {list(SCALE_MODES)}")
    if mode == "tile":
        return width, height
    if mode == "resize" or load_size is None:
        return tile, tile
    return resized_size(width, height, preprocess=preprocess, load_size=load_size)


def min_decoded_side(preprocess: str, load_size: int) -> int:
    """The smallest side a reduced-scale decode may keep for `resized_size` to lose nothing
    (0: decode at full size). Prepare and translate ask for the same, so they get the same
    pixels (twice it for a half of an A|B image)."""
    mode = check_preprocess(preprocess)
    return load_size if mode in ("resize_and_crop", "scale_width", "scale_width_and_crop") else 0


def resample(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 H x W x C -> height x width x C, bicubic as the official code (PIL).

    The one resampler from an image to the model's size and back, wherever the model runs:
    prepare, validation, evaluation, the registered model and translate.
    """
    if pixels.shape[:2] == (height, width):
        return pixels
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    out = np.asarray(img.resize((width, height), Image.Resampling.BICUBIC))
    return out[..., None] if out.ndim == 2 else out
