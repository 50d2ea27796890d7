"""pipelines.common.tables: slicing a table into Ray Data blocks."""

import pyarrow as pa
import pytest

from pipelines.common import tables


@pytest.mark.parametrize(
    ("num_rows", "rows", "sizes"), [(10, 4, [4, 4, 2]), (8, 4, [4, 4]), (3, 8, [3]), (0, 4, [])]
)
def test_slices_cover_every_row_once_in_order(num_rows, rows, sizes):
    table = pa.table({"i": list(range(num_rows))})
    blocks = tables.slices(table, rows)
    assert [b.num_rows for b in blocks] == sizes
    assert [i for b in blocks for i in b["i"].to_pylist()] == list(range(num_rows))
