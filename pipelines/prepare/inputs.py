"""The inputs of a source before any image is read, as Arrow tables.

`sources` (folders) and `manifest` (a CSV or Parquet list) both end in `Sources`: the work
for the Ray tasks and the inputs already known to be unusable, each with its reason.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.common.dataset import QUARANTINE_SCHEMA
from pipelines.common.tables import rows

# What fingerprint() hashes: one row per file.
ENTRY_SCHEMA = pa.schema([("name", pa.string()), ("size", pa.string()), ("version", pa.string())])


@dataclass
class Sources:
    """The inputs of a source, before any image is read."""

    layout: str
    work: pa.Table  # WORK_SCHEMA rows: key, split, a_url, b_url
    quarantine: pa.Table  # QUARANTINE_SCHEMA rows: url, reason
    fingerprint: str = ""

    @property
    def inputs(self) -> int:
        return self.work.num_rows + self.quarantine.num_rows


def quarantine_table(urls: Any, reasons: Any) -> pa.Table:
    """QUARANTINE_SCHEMA rows: one reason per URL, or the same reason (a str) for all."""
    if isinstance(reasons, str):
        reasons = pa.repeat(pa.scalar(reasons), len(urls))
    return pa.table({"url": urls, "reason": reasons}, schema=QUARANTINE_SCHEMA)


def split_duplicates(table: pa.Table, group: list[str], order: str) -> tuple[pa.Table, pa.Table]:
    """(rows that keep their key, rows whose key an earlier row has), both sorted by `order`;
    the duplicates carry `first`, the `order` value of the row that keeps the key."""
    firsts = table.group_by(group).aggregate([(order, "min")])
    firsts = firsts.select([*group, f"{order}_min"]).rename_columns([*group, "first"])
    joined = table.join(firsts, group, join_type="inner").sort_by(order)
    repeated = pc.not_equal(joined[order], joined["first"])
    kept = joined.filter(pc.invert(repeated)).drop_columns(["first"])
    return kept, joined.filter(repeated)


def fingerprint(entries: pa.Table, extra: bytes = b"") -> str:
    """sha256 of `extra` and the sorted `name<TAB>size<TAB>version` lines of ENTRY_SCHEMA
    rows."""
    entries = entries.select(ENTRY_SCHEMA.names).cast(ENTRY_SCHEMA)
    entries = entries.sort_by([(name, "ascending") for name in ENTRY_SCHEMA.names])
    lines = pc.binary_join_element_wise(*entries.columns, "\t")
    digest = hashlib.sha256(extra)
    for chunk in rows(pa.table({"line": lines})):
        digest.update("".join(f"{line}\n" for (line,) in chunk).encode())
    return f"sha256:{digest.hexdigest()}"


def key_of(relpath: str) -> str:
    """`train/x.jpg` -> `train/x`: what pairs A with B and names the pair."""
    return posixpath.splitext(relpath)[0]
