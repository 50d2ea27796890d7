"""Tiled inference: any image size through a generator that takes a fixed size.

The U-Net sees `tile x tile` crops (its own size, e.g. 256 for unet_256). An image larger
than that is covered by overlapping tiles; each translated tile is weighted by a window
that is 1 inside and falls off smoothly (raised cosine) over the overlap, on the sides that
have a neighbour only, and the weighted tiles are summed and divided by the summed weights.
The weights form a partition of unity, so there is no seam where the convolutions' border
effects of two tiles meet, and an image that fits in one tile goes through exactly as in
the plain forward. Images smaller than a tile are padded by reflection and cropped back.

Tiles of several images are batched together, so small and large images share forwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering `length`, spread evenly, overlapping by >= `overlap`."""
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got {tile=}, {overlap=}")
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    last = length - tile
    return [round(i * last / (count - 1)) for i in range(count)]


def _ramp(length: int, n: int, *, rise: bool, fall: bool) -> torch.Tensor:
    """1 inside; raised cosine over `n` samples at the rising and/or falling end."""
    w = torch.ones(length, dtype=torch.float64)
    if n > 0:
        # Samples at half-steps keep every weight strictly positive.
        edge = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(n, dtype=torch.float64) + 0.5) / n)
        if rise:
            w[:n] = edge
        if fall:
            w[-n:] = torch.minimum(w[-n:], edge.flip(0))
    return w


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a `height x width` image lie (the image padded to >= one tile)."""

    height: int
    width: int
    tile: int
    overlap: int

    @property
    def padded(self) -> tuple[int, int]:
        return max(self.height, self.tile), max(self.width, self.tile)

    @property
    def rows(self) -> list[int]:
        return tile_starts(self.padded[0], self.tile, self.overlap)

    @property
    def cols(self) -> list[int]:
        return tile_starts(self.padded[1], self.tile, self.overlap)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def windows(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(top, left, weight tile x tile) per tile, row-major."""
        rows, cols = self.rows, self.cols
        for i, top in enumerate(rows):
            wy = _ramp(self.tile, self.overlap, rise=i > 0, fall=i < len(rows) - 1)
            for j, left in enumerate(cols):
                wx = _ramp(self.tile, self.overlap, rise=j > 0, fall=j < len(cols) - 1)
                yield top, left, torch.outer(wy, wx)


def _pad_to(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Reflect-pad C x H x W at the bottom/right to at least `height x width`."""
    while True:
        h, w = image.shape[-2:]
        dh, dw = max(height - h, 0), max(width - w, 0)
        if dh == 0 and dw == 0:
            return image
        if h > 1 and w > 1:
            # Reflection adds at most size - 1 per step; repeat it for larger pads.
            dh, dw = min(dh, h - 1), min(dw, w - 1)
            image = F.pad(image[None], (0, dw, 0, dh), mode="reflect")[0]
        else:
            image = F.pad(image[None], (0, dw, 0, dh), mode="replicate")[0]


def split(image: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """C x H x W -> N x C x tile x tile, in `grid.windows()` order."""
    padded = _pad_to(image, *grid.padded)
    t = grid.tile
    return torch.stack([padded[:, y : y + t, x : x + t] for y, x, _ in grid.windows()])


def merge(tiles: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """N x C x tile x tile (translated) -> C x H x W, blended with the grid's windows."""
    blend = _Blend(grid)
    for tile, (y, x, weight) in zip(tiles, grid.windows(), strict=True):
        blend.add(tile, y, x, weight)
    return blend.result()


def translate_tiled(
    forward: Forward,
    images: Iterable[torch.Tensor],
    *,
    tile: int,
    overlap: int,
    batch_size: int,
) -> Iterator[torch.Tensor]:
    """Translate C x H x W images of any size with `forward` on batches of tiles.

    `forward` maps B x C x tile x tile to B x C' x tile x tile. Tiles of consecutive images
    share batches of `batch_size`, so the batch stays full across image borders. Outputs
    come in input order, each as soon as its last tile is through: only the images with
    tiles in the current batch are held, however many `images` yields.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    pending: list[tuple[_Blend, int, int, torch.Tensor, torch.Tensor]] = []
    blends: list[_Blend] = []  # images not yet yielded, in order

    def run_batch() -> Iterator[torch.Tensor]:
        outputs = forward(torch.stack([crop for *_, crop in pending]))
        for (blend, y, x, weight, _), out in zip(pending, outputs, strict=True):
            blend.add(out, y, x, weight)
        pending.clear()
        while blends and blends[0].complete:
            yield blends.pop(0).result()

    for image in images:
        grid = TileGrid(int(image.shape[-2]), int(image.shape[-1]), tile, overlap)
        blend = _Blend(grid)
        blends.append(blend)
        padded = _pad_to(image, *grid.padded)
        for y, x, weight in grid.windows():
            pending.append((blend, y, x, weight, padded[:, y : y + tile, x : x + tile]))
            if len(pending) == batch_size:
                yield from run_batch()
    if pending:
        yield from run_batch()


class _Blend:
    """One image's running sum of weighted tiles, and how many tiles are still to come."""

    def __init__(self, grid: TileGrid) -> None:
        self.grid, self.missing = grid, len(grid)
        self.total: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None

    @property
    def complete(self) -> bool:
        return self.missing == 0

    def add(self, out: torch.Tensor, y: int, x: int, weight: torch.Tensor) -> None:
        self.missing -= 1
        if len(self.grid) == 1:  # the plain forward's output, untouched
            self.total = out
            return
        if self.total is None:
            self.total = out.new_zeros((out.shape[0], *self.grid.padded))
            self.weight = out.new_zeros(self.grid.padded)
        t = self.grid.tile
        weight = weight.to(out)
        self.total[:, y : y + t, x : x + t] += out * weight
        self.weight[y : y + t, x : x + t] += weight

    def result(self) -> torch.Tensor:
        out = self.total if self.weight is None else self.total / self.weight
        return out[:, : self.grid.height, : self.grid.width]
