"""The manifest layout: a CSV or Parquet file of pairs (`a`, `b`, optional `split`, `key`).

Entries are URLs, or paths relative to the manifest's folder. The file is read whole as
Arrow columns; a row of the wrong width is quarantined with its number, not dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipelines.common.dataset import QUARANTINE_SCHEMA, SPLITS
from pipelines.common.errors import UserError
from pipelines.common.listing import version
from pipelines.common.storage import Location
from pipelines.common.tables import concat, map_rows, rows
from pipelines.prepare.inputs import (
    ENTRY_SCHEMA,
    Sources,
    fingerprint,
    key_of,
    quarantine_table,
    split_duplicates,
)
from pipelines.prepare.pairs import WORK_SCHEMA

MANIFEST_EXTENSIONS = (".csv", ".parquet")


def _read_manifest(src: Location) -> tuple[pa.Table, list[tuple[int, str]], bytes]:
    """The manifest's rows as string columns plus `row` (its line in a CSV, counting the
    header as 1), the rows that could not be read ((row, why)), and its bytes."""
    data = src.read_bytes()
    unreadable: list[tuple[int, str]] = []
    try:
        if src.name.lower().endswith(".parquet"):
            table = pq.read_table(io.BytesIO(data))
            table = table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))
        else:
            text = data.decode("utf-8-sig")
            header = next(csv.reader(io.StringIO(text)), [])

            def short_row(row: Any) -> str:  # a row of the wrong width: say so, go on
                why = f"{row.actual_columns} fields where the header has {row.expected_columns}"
                unreadable.append((row.number, why))
                return "skip"

            table = pa_csv.read_csv(
                io.BytesIO(text.encode()),
                # One thread: the reader then knows each short row's number.
                read_options=pa_csv.ReadOptions(use_threads=False),
                parse_options=pa_csv.ParseOptions(invalid_row_handler=short_row),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in header}, strings_can_be_null=False
                ),
            )
    except Exception as err:
        raise UserError(f"{src.url}: cannot read the manifest: {err}") from None
    if table.num_columns and not {"a", "b"} <= set(table.column_names):
        raise UserError(
            f"{src.url}: a manifest needs columns a and b (URLs), found "
            f"{', '.join(table.column_names)}"
        )
    return table, unreadable, data


def _resolve(value: str, base: Location) -> str:
    """A manifest entry -> a URL; relative paths are relative to the manifest's folder."""
    if "://" in value or value.startswith("/"):
        return Location.parse(value, base.options).url
    return base.join(value).url


MANIFEST_WORK_SCHEMA = WORK_SCHEMA.append(pa.field("row", pa.int64()))


def _manifest_rows(src: Location, entries: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The manifest's rows (a, b, split, key, row) -> (work with `row`, quarantine)."""
    base = Location(posixpath.dirname(src.url), src.options)
    work_parts, bad_parts = [], []
    for chunk in rows(entries):
        work, bad = [], []
        for a, b, split, key, number in chunk:
            where = f"{src.url} (row {number})"
            a, b = (str(v or "").strip() for v in (a, b))
            if not a or not b:
                missing = " and ".join(s for s, v in (("a", a), ("b", b)) if not v)
                bad.append(
                    {"url": _resolve(a, base) if a else where, "reason": f"no {missing} in {where}"}
                )
                continue
            a_url, b_url = _resolve(a, base), _resolve(b, base)
            split = str(split or "train").strip()
            if split not in SPLITS:
                reason = f"unknown split {split!r} in {where}; use one of {', '.join(SPLITS)}"
                bad.append({"url": a_url, "reason": reason})
                continue
            key = str(key or "").strip() or key_of(posixpath.basename(a))
            work.append({"key": key, "split": split, "a_url": a_url, "b_url": b_url, "row": number})
        work_parts.append(pa.Table.from_pylist(work, schema=MANIFEST_WORK_SCHEMA))
        bad_parts.append(pa.Table.from_pylist(bad, schema=QUARANTINE_SCHEMA))
    return concat(MANIFEST_WORK_SCHEMA, work_parts), concat(QUARANTINE_SCHEMA, bad_parts)


def manifest_sources(src: Location) -> Sources:
    """The work and early quarantine of a manifest file (CSV or Parquet)."""
    table, unreadable, data = _read_manifest(src)
    # Each row's number in the file (the header is row 1), the unreadable ones left out.
    skipped = [number for number, _ in unreadable]
    numbers = np.setdiff1d(np.arange(2, 2 + table.num_rows + len(skipped)), skipped)
    empty = pa.nulls(table.num_rows, pa.string())
    entries = pa.table(
        {
            **{
                c: table[c] if c in table.column_names else empty
                for c in ("a", "b", "split", "key")
            },
            "row": pa.array(numbers, pa.int64()),
        }
    )
    work, bad = _manifest_rows(src, entries)
    kept, repeated = split_duplicates(work, ["key"], "row")
    quarantine = [
        pa.Table.from_pylist(
            [
                {"url": f"{src.url} (row {n})", "reason": f"cannot read row {n}: {why}"}
                for n, why in unreadable
            ],
            schema=QUARANTINE_SCHEMA,
        ),
        bad,
        quarantine_table(
            repeated["a_url"],
            map_rows(
                repeated.select(["key", "first"]),
                lambda k, n: f"duplicate key {k!r} (also row {n})",
            ),
        ),
    ]
    out = Sources("manifest", kept.select(WORK_SCHEMA.names), concat(QUARANTINE_SCHEMA, quarantine))
    out.fingerprint = _manifest_fingerprint(src, data, out)
    return out


def _manifest_fingerprint(src: Location, manifest: bytes, sources: Sources) -> str:
    """The manifest's bytes plus the listing of the folders its images are in.

    One listing per folder, not one request per image: manifests point into a few folders.
    """
    urls = pa.concat_arrays(
        [
            sources.work["a_url"].combine_chunks(),
            sources.work["b_url"].combine_chunks(),
            sources.quarantine["url"].combine_chunks(),
        ]
    )
    urls = pa.table({"url": pc.unique(urls)})
    urls = urls.append_column("folder", map_rows(urls, posixpath.dirname)).sort_by("folder")
    listed = []
    for folder in pc.unique(urls["folder"]).to_pylist():
        loc = Location(folder, src.options)
        try:
            listing = {info["name"]: info for info in loc.fs.ls(loc.path, detail=True)}
        except (FileNotFoundError, NotADirectoryError):
            listing = {}
        loc.fs.invalidate_cache(loc.path)  # the listings cache would keep every folder's
        members = urls.filter(pc.equal(urls["folder"], folder))
        found = []
        for chunk in rows(members.select(["url"])):
            for (url,) in chunk:
                info = listing.get(Location(url, src.options).path, {})
                found.append(
                    {
                        "name": url,
                        "size": str(info.get("size", "missing")),
                        "version": version(info),
                    }
                )
        listed.append(pa.Table.from_pylist(found, schema=ENTRY_SCHEMA))
    return fingerprint(concat(ENTRY_SCHEMA, listed), extra=hashlib.sha256(manifest).digest())
