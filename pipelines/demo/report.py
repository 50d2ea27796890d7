"""A results report: `grid.png` (input | output | target rows) and `report.html` around it.

Used by `pix2pix demo`; takes plain uint8 images, so any job can write one. The grid is
drawn at an integer scale with nearest-neighbour pixels, so what it shows is what the
model wrote, not a smoothed version of it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLUMNS = ("input", "output", "target")
GRID_FILE, HTML_FILE = "grid.png", "report.html"
GAP = 4  # pixels between cells
HEADER = 24  # the band with the column titles
LABEL_WIDTH = 200  # the column on the right: key and the row's own scores (26 characters)
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


@dataclass(frozen=True)
class ReportRow:
    """One example: what went in, what the model made, what it should have made."""

    key: str
    input: np.ndarray  # uint8 H x W x 3
    output: np.ndarray
    target: np.ndarray

    def scores(self) -> dict[str, float]:
        """L1 in [-1, 1] units (as training reports it) and PSNR in dB, of this row alone."""
        out = self.output.astype(np.float64) / 127.5 - 1
        tgt = self.target.astype(np.float64) / 127.5 - 1
        l1 = float(np.abs(out - tgt).mean())
        mse = float(((out - tgt) ** 2).mean())
        psnr = float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)  # peak-to-peak is 2
        return {"l1": l1, "psnr": psnr}


@dataclass(frozen=True)
class GridLayout:
    """Where each cell of the grid is, so readers (and tests) need not redo the sums."""

    rows: int
    cell: int  # side of a cell in pixels
    scale: int

    @property
    def size(self) -> tuple[int, int]:
        width = GAP + len(COLUMNS) * (self.cell + GAP) + LABEL_WIDTH
        height = HEADER + self.rows * (self.cell + GAP)
        return width, height

    def box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a cell."""
        left = GAP + column * (self.cell + GAP)
        top = HEADER + row * (self.cell + GAP)
        return left, top, left + self.cell, top + self.cell


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _side(rows: Sequence[ReportRow]) -> int:
    sides = {img.shape[:2] for r in rows for img in (r.input, r.output, r.target)}
    if len(sides) != 1 or len(next(iter(sides))) != 2 or len(set(next(iter(sides)))) != 1:
        raise ValueError(f"every image must be square and of one size, got {sorted(sides)}")
    return next(iter(sides))[0]


def render_grid(rows: Sequence[ReportRow], *, scale: int | None = None) -> Image.Image:
    """input | output | target, one row per example, each row's key and scores beside it."""
    if not rows:
        raise ValueError("a grid needs at least one row")
    layout = grid_layout(len(rows), _side(rows), scale)
    grid = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(grid)
    font, small = _font(14), _font(12)
    for column, title in enumerate(COLUMNS):
        left, _, right, _ = layout.box(0, column)
        draw.text(((left + right) // 2, HEADER // 2), title, fill=INK, font=font, anchor="mm")
    for index, row in enumerate(rows):
        for column, image in enumerate((row.input, row.output, row.target)):
            tile = Image.fromarray(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
            if layout.scale > 1:
                tile = tile.resize((layout.cell, layout.cell), Image.Resampling.NEAREST)
            grid.paste(tile, layout.box(index, column)[:2])
        _, top, right, _ = layout.box(index, len(COLUMNS) - 1)
        scores = row.scores()
        text = f"{row.key}\nL1 {scores['l1']:.3f}\nPSNR {scores['psnr']:.1f} dB"
        draw.multiline_text((right + 2 * GAP, top + GAP), text, fill=INK, font=small, spacing=4)
    return grid


def grid_layout(rows: int, side: int, scale: int | None = None) -> GridLayout:
    """The layout `render_grid` uses for `rows` images of `side` pixels."""
    scale = scale or max(1, 128 // side)
    return GridLayout(rows=rows, cell=side * scale, scale=scale)


def _table(items: Mapping[str, str]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in items.items()
    )
    return f"<table>{cells}</table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { text-align: left; padding: 0.25em 1em 0.25em 0; vertical-align: top; }
th { font-weight: 600; }
.metrics td { font-variant-numeric: tabular-nums; }
pre { background: #f4f4f4; padding: 0.75em; overflow-x: auto; }
img { image-rendering: pixelated; max-width: 100%; }
"""


def write_report(
    out_dir: Path,
    rows: Sequence[ReportRow],
    *,
    title: str,
    metrics: Mapping[str, float],
    details: Mapping[str, str] | None = None,
    commands: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write `grid.png` and `report.html` (which shows the grid) into `out_dir`.

    `metrics`: name -> value over the whole evaluated split (shown at the top);
    `details`: what was trained on what, where things are; `commands`: what to run next.
    Returns (html path, grid path).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    grid_path = out_dir / GRID_FILE
    render_grid(rows).save(grid_path)
    metric_cells = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{value:.4f}</td></tr>"
        for name, value in metrics.items()
    )
    per_row = "".join(
        f"<tr><td>{html.escape(r.key)}</td><td>{s['l1']:.4f}</td><td>{s['psnr']:.2f}</td></tr>"
        for r, s in ((r, r.scores()) for r in rows)
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<table class="metrics">{metric_cells}</table>',
        f'<p><img src="{GRID_FILE}" alt="input | output | target, one row per test image"></p>',
        "<h2>Per image</h2>",
        '<table class="metrics"><tr><th>image</th><th>L1</th><th>PSNR (dB)</th></tr>'
        f"{per_row}</table>",
    ]
    if details:
        body += ["<h2>Run</h2>", _table(details)]
    if commands:
        body += ["<h2>Next</h2>", f"<pre>{html.escape(chr(10).join(commands))}</pre>"]
    page = (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    html_path = out_dir / HTML_FILE
    html_path.write_text(page, encoding="utf-8")
    return html_path, grid_path
