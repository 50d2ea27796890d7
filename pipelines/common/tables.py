"""Per-row rules over Arrow tables, a chunk at a time.

The drivers of prepare and translate keep what they know of each input in Arrow columns
(a few bytes a value) rather than Python objects (tens to hundreds of bytes each), and
apply the rules that need Python to a bounded chunk of rows at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

CHUNK = 10_000  # rows turned into Python objects at a time


def rows(table: pa.Table) -> Iterator[list[tuple]]:
    """The table's rows as Python tuples, at most CHUNK at a time."""
    for start in range(0, table.num_rows, CHUNK):
        chunk = table.slice(start, CHUNK)
        yield list(zip(*(chunk[name].to_pylist() for name in chunk.column_names), strict=True))


def map_rows(table: pa.Table, fn: Callable[..., Any], type_: pa.DataType | None = None) -> pa.Array:
    """fn(*row) for each row of `table` (strings unless `type_` says otherwise)."""
    type_ = type_ or pa.string()
    parts = [pa.array([fn(*row) for row in chunk], type_) for chunk in rows(table)]
    return pa.chunked_array(parts, type_).combine_chunks()


def slices(table: pa.Table, rows: int) -> list[pa.Table]:
    """`table` cut into consecutive zero-copy slices of `rows` rows (the last may be shorter),
    the blocks of a `ray.data.from_arrow` dataset. The driver keeps about 45 KB for each
    block it creates until the run ends (its object and Ray Data's metadata), so blocks of
    a handful of rows cost it more than the rows themselves."""
    return [table.slice(start, rows) for start in range(0, table.num_rows, rows)]


def concat(schema: pa.Schema, tables: list[pa.Table]) -> pa.Table:
    """The tables' rows in `schema` (its columns, in its types), one after the other."""
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])
