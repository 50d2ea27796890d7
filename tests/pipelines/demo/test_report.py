"""The demo's report: grid.png has one input | output | target row per example, and
report.html shows the grid and the metrics. (The full demo is run by hand: `make demo`.)"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.demo.report import COLUMNS, ReportRow, grid_layout, write_report


def _solid(value: int, side: int = 32) -> np.ndarray:
    return np.full((side, side, 3), value, dtype=np.uint8)


def _rows() -> list[ReportRow]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        target = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        rows.append(
            ReportRow(key=f"pair_{i}", input=_solid(40 * i), output=_solid(200), target=target)
        )
    return rows


def test_grid_has_a_row_per_example_in_input_output_target_order(tmp_path):
    rows = _rows()
    _, grid_path = write_report(
        tmp_path, rows, title="demo", metrics={"test L1": 0.1234, "test PSNR": 21.5}
    )
    grid = np.asarray(Image.open(grid_path).convert("RGB"))
    layout = grid_layout(len(rows), 32)
    assert layout.scale == 4 and grid.shape[1::-1] == layout.size
    for i, row in enumerate(rows):
        for column, expected in enumerate((row.input, row.output, row.target)):
            left, top, right, bottom = layout.box(i, column)
            cell = grid[top:bottom, left:right]
            # nearest-neighbour upscaling: every pixel of the example, scale x scale times
            assert np.array_equal(cell[:: layout.scale, :: layout.scale], expected), (i, column)
    assert COLUMNS == ("input", "output", "target")


def test_html_shows_the_grid_the_metrics_and_each_row(tmp_path):
    rows = _rows()
    html_path, grid_path = write_report(
        tmp_path,
        rows,
        title="pix2pix <demo>",
        metrics={"test L1": 0.1234, "test PSNR": 21.5},
        details={"run folder": "/tmp/runs/demo"},
        commands=["mlflow ui --backend-store-uri sqlite:///x.db"],
    )
    page = html_path.read_text()
    assert f'<img src="{grid_path.name}"' in page and grid_path.parent == html_path.parent
    assert "test L1</th><td>0.1234" in page and "test PSNR</th><td>21.5000" in page
    assert "pix2pix &lt;demo&gt;" in page  # escaped
    for row in rows:
        scores = row.scores()
        assert f"<td>{row.key}</td><td>{scores['l1']:.4f}</td>" in page
    assert "/tmp/runs/demo" in page and "mlflow ui --backend-store-uri" in page


def test_row_scores_are_l1_and_psnr_in_training_units():
    row = ReportRow(key="k", input=_solid(0), output=_solid(255), target=_solid(0))
    assert row.scores()["l1"] == pytest.approx(2.0)  # [-1, 1]: the full range apart
    assert row.scores()["psnr"] == pytest.approx(0.0)
    same = ReportRow(key="k", input=_solid(0), output=_solid(9), target=_solid(9))
    assert same.scores() == {"l1": 0.0, "psnr": float("inf")}


def test_images_of_different_sizes_are_refused(tmp_path):
    bad = ReportRow(key="k", input=_solid(0, 32), output=_solid(0, 16), target=_solid(0, 32))
    with pytest.raises(ValueError, match="one size"):
        write_report(tmp_path, [bad], title="t", metrics={})
