"""The options of `pix2pix translate`: what to translate, where to, and how."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.common.images import DEFAULT_MAX_PIXELS, OUTPUT_FORMATS
from pipelines.config.fields import option
from pix2pix_core.geometry import PREPROCESS_MODES

SIDES = ("A", "B", "full")
IO_PLACES = ("auto", "tasks", "actor")


@dataclass(frozen=True, kw_only=True)
class TranslateOptions:
    """Translation: what, where, and how."""

    model: str | None = option(
        None,
        "the generator: models:/NAME@ALIAS, models:/NAME/VERSION, a checkpoint URL, or an "
        "official *_net_G.pth (its architecture given by --netG, --ngf, --norm, ...)",
        required=True,
    )
    input: str | None = option(
        None,
        "a folder or prefix (recursive), one image, or a .txt/.csv list of URLs",
        required=True,
    )
    output: str | None = option(
        None, "the folder for outputs and _manifest/ (any fsspec URL)", required=True
    )
    input_side: str = option("full", "for aligned A|B images: translate A or B", choices=SIDES)
    format: str = option("png", "output format", choices=OUTPUT_FORMATS)
    suffix: str = option("", "added to each output's name, e.g. _fake")
    load_size: int | None = option(
        None,
        "resize inputs to N x N before tiling, the scale training saw (default: the "
        "load_size the model was trained from; for an official *_net_G.pth, the model's size, "
        "as the official test)",
    )
    preprocess: str | None = option(
        None,
        "how --load_size resizes (default: the model's --preprocess, else resize_and_crop)",
        choices=PREPROCESS_MODES,
    )
    resize: bool = option(False, "resize every image to the model's size and back")
    tile: bool = option(False, "every image at full resolution in overlapping tiles")
    tile_overlap: int | None = option(None, "tile overlap in pixels (default: tile size / 4)")
    eval: bool | None = option(
        None,
        "eval mode: dropout off, batch norm with its running statistics; --no_eval: the "
        "paper's test time, dropout on, each image's own statistics (default: the setting "
        "the model was saved with)",
    )
    batch_size: int = option(8, "images (tiles, for large ones) per forward pass")
    num_actors: int | None = option(
        None,
        "model actors (default: one per GPU; on CPUs, one per core / --num_cpus_per_actor, "
        "as many as the cluster's memory holds)",
    )
    num_gpus_per_actor: float | None = option(None, "GPUs per actor (default: 1 if any, else 0)")
    num_cpus_per_actor: int | None = option(
        None,
        "CPUs (torch threads) per actor (default: 1; on CPUs with --num_actors, the cores "
        "shared among the actors)",
    )
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "larger images are recorded as failed")
    io: str = option(
        "auto",
        "where images are read, decoded, encoded and written: 'tasks' beside the model actors "
        "(overlapping the forward), or in the 'actor', in series with it (default: tasks "
        "with GPUs, actor on CPUs, where the forward already uses every core)",
        choices=IO_PLACES,
    )

    def __post_init__(self) -> None:
        for name in ("model", "input", "output"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        if self.resize and self.tile:
            raise ValueError("--resize and --tile exclude each other; give one (or neither)")
        for name in ("batch_size", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("num_actors", "num_cpus_per_actor", "load_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value!r}")
        if self.num_gpus_per_actor is not None and self.num_gpus_per_actor < 0:
            raise ValueError(f"--num_gpus_per_actor must be >= 0, got {self.num_gpus_per_actor!r}")
        if self.tile_overlap is not None and self.tile_overlap < 0:
            raise ValueError(f"--tile_overlap must be >= 0, got {self.tile_overlap!r}")

    @property
    def mode(self) -> str:
        return "resize" if self.resize else "tile" if self.tile else "auto"
