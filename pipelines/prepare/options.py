"""The options of `pix2pix prepare`. Each changes the prepared data, so each is marked
`learns`: the retrain workflow prepares again when one changes."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.common.images import DEFAULT_MAX_PIXELS
from pipelines.config.fields import option
from pipelines.prepare.sources import LAYOUTS
from pix2pix_core.geometry import PREPROCESS_MODES, check_preprocess

DIRECTIONS = ("AtoB", "BtoA")
DATASET_MODES = ("aligned", "colorization")


@dataclass(frozen=True, kw_only=True)
class PrepareOptions:
    """Preparing a dataset."""

    layout: str | None = option(
        None, "aligned | folders | manifest (default: detected)", choices=LAYOUTS, learns=True
    )
    dataset_mode: str = option(
        "aligned",
        "aligned: A/B pairs, found as --layout says; colorization: single RGB pictures, whose "
        "colour (Lab's ab) the model learns from their lightness (L)",
        choices=DATASET_MODES,
        learns=True,
    )
    direction: str = option(
        "AtoB", "AtoB: left/A is the input; BtoA swaps", choices=DIRECTIONS, learns=True
    )
    load_size: int = option(286, "images are resized to load_size x load_size", learns=True)
    preprocess: str = option(
        "resize_and_crop",
        "how train images are resized (training crops crop_size where the name says crop): "
        "resize_and_crop: to load_size x load_size; crop: kept at their size; scale_width"
        "[_and_crop]: width to load_size, the aspect kept; none: kept, sides rounded to "
        "multiples of 4",
        choices=PREPROCESS_MODES,
        learns=True,
    )
    val_fraction: float = option(
        0.1, "share of train carved out as val when SRC has no val", learns=True
    )
    seed: int = option(0, "seed of the val carving", learns=True)
    max_pixels: int = option(
        DEFAULT_MAX_PIXELS, "refuse larger images as decompression bombs", learns=True
    )

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be AtoB or BtoA, got {self.direction!r}")
        if self.dataset_mode not in DATASET_MODES:
            raise ValueError(
                f"dataset_mode must be one of {', '.join(DATASET_MODES)}, got {self.dataset_mode!r}"
            )
        if self.dataset_mode == "colorization":
            # The official colorization dataset's own rule: L in, ab out, never the reverse.
            if self.direction != "AtoB":
                raise ValueError(
                    f"dataset_mode colorization needs direction AtoB (lightness in, colour "
                    f"out), got {self.direction!r}"
                )
            if self.layout not in (None, "aligned"):
                raise ValueError(
                    f"dataset_mode colorization reads single pictures from a folder (layout "
                    f"aligned), not layout {self.layout!r}"
                )
        check_preprocess(self.preprocess)
        if self.load_size < 1:
            raise ValueError(f"load_size must be positive, got {self.load_size!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, got {self.max_pixels!r}")
