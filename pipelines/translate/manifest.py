"""`DST/_manifest/`: what happened to every input, so a rerun continues where one stopped.

    DST/_manifest/
      job.json            the settings that decide the outputs (model, side, mode, format, ...)
      manifest.jsonl      one JSON object per input, the latest state (written at the end)
      parts/*.jsonl       records written while a run goes, one file per batch of outputs

A record: `{"input": URL, "status": "done" | "failed", "output": URL | null,
"reason": str | null, "note": str, "time": epoch seconds}`.

The write tasks store a batch's outputs first and its part file after, so a record
"done" always means the output is complete; a run killed in between leaves outputs without
records, which the rerun translates again to the same names (each write replaces the file
whole). The state of an input is its latest record; at the end of a run the parts are
folded into `manifest.jsonl` and deleted.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pipelines.common.errors import UserError
from pipelines.common.listing import list_table
from pipelines.common.names import File
from pipelines.common.storage import Location

MANIFEST_DIR, MANIFEST_FILE = File.MANIFEST_DIR, File.MANIFEST
JOB_FILE, PARTS_DIR = File.TRANSLATE_JOB, File.MANIFEST_PARTS

Record = dict[str, Any]
# Records as the driver holds them: in Arrow columns, never a Python object per input.
SCHEMA = pa.schema(
    [
        ("input", pa.string()),
        ("status", pa.string()),
        ("output", pa.string()),
        ("reason", pa.string()),
        ("note", pa.string()),
        ("time", pa.float64()),
    ]
)
_TEXT_FIELDS = ("input", "status", "output", "reason", "note")
_STATUSES = pa.array(["done", "failed"])
_PARSE = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
# One thread and small blocks: a parse holds little beside the table it builds.
_READ = pj.ReadOptions(use_threads=False, block_size=1 << 18)
_CHUNK = 1_000  # records turned into Python objects at a time
_PART_BYTES = 1 << 18  # part files fetched (concurrently) and parsed together: about this much


def manifest_location(dst: Location) -> Location:
    return dst.join(MANIFEST_DIR)


def record(
    url: str, *, output: str | None = None, reason: str | None = None, note: str = ""
) -> Record:
    """A record for one input: done (with its output) or failed (with the reason)."""
    return {
        "input": url,
        "status": "failed" if reason else "done",
        "output": None if reason else output,
        "reason": reason,
        "note": note,
        "time": time.time(),
    }


def write_part(dst: Location, records: Iterable[Record]) -> None:
    """Append a batch of records (one new object: safe with many writers at once)."""
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    if not lines:
        return
    name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.jsonl"
    manifest_location(dst).join(PARTS_DIR, name).write_bytes(lines.encode())


def _fits(rec: Any) -> bool:
    """Whether a parsed line is a record of SCHEMA's types (whatever else it holds)."""
    return (
        isinstance(rec, dict)
        and all(isinstance(rec.get(k), str | None) for k in _TEXT_FIELDS)
        and isinstance(rec.get("time"), int | float | None)
    )


def _parse_lines(lines: Iterable[bytes]) -> pa.Table:
    """The records among `lines`, one at a time: what pyarrow refused to read whole."""
    batches, rows = [], []
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            # A torn line (a crash mid-write on a filesystem without atomic rename): skip it;
            # its input is then simply translated again.
            continue
        if _fits(rec):
            rows.append(rec)
        if len(rows) == _CHUNK:
            batches.append(pa.RecordBatch.from_pylist(rows, schema=SCHEMA))
            rows = []
    batches.append(pa.RecordBatch.from_pylist(rows, schema=SCHEMA))
    return pa.Table.from_batches(batches, schema=SCHEMA)


def _parse(data: bytes) -> pa.Table:
    try:
        return pj.read_json(io.BytesIO(data), parse_options=_PARSE, read_options=_READ)
    except pa.ArrowInvalid:  # a torn line, or no line at all
        return _parse_lines(data.splitlines())


def _read_manifest(main: Location) -> pa.Table:
    """The records of manifest.jsonl, streamed from storage (it holds every input)."""
    if not main.exists():
        return SCHEMA.empty_table()
    try:
        with main.fs.open(main.path, "rb") as f:
            return pj.read_json(f, parse_options=_PARSE, read_options=_READ)
    except pa.ArrowInvalid:  # a torn line, or no line at all
        with main.fs.open(main.path, "rb") as f:
            return _parse_lines(f)


def _read_parts(dst: Location, groups: list[list[str]]) -> Iterator[pa.Table]:
    """The records of the part files, fetched (concurrently on object stores) and parsed a
    group of files at a time."""
    fs = manifest_location(dst).fs
    for group in groups:
        files = list(fs.cat(group, on_error="omit").values())
        # Each file whole on its own lines, so a torn last line spoils only its own file.
        files = [data if data.endswith(b"\n") else data + b"\n" for data in files]
        try:
            yield pj.read_json(
                io.BytesIO(b"".join(files)), parse_options=_PARSE, read_options=_READ
            )
        except pa.ArrowInvalid:
            yield from (_parse(data) for data in files)


def _part_groups(dst: Location) -> list[list[str]]:
    """The part files (one per batch of inputs), in groups of about _PART_BYTES."""
    listing = list_table(manifest_location(dst).join(PARTS_DIR))
    listing = listing.filter(pc.ends_with(listing["path"], ".jsonl"))
    groups: list[list[str]] = []
    size = _PART_BYTES
    for path, part_size in zip(
        listing["path"].to_pylist(), listing["size"].to_pylist(), strict=True
    ):
        if size >= _PART_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += part_size
    return groups


def _by_input(inputs: pa.ChunkedArray) -> pa.Array | None:
    """The order that sorts `inputs`, or None when they are sorted and distinct already."""
    n = len(inputs)
    if n <= 1 or pc.all(pc.less(inputs.slice(0, n - 1), inputs.slice(1))).as_py():
        return None
    return pc.sort_indices(inputs)


def _one_chunk(table: pa.Table) -> pa.Table:
    """`table` in one chunk, combined a column at a time: the copy costs the largest column,
    not the table (when the caller holds no other reference to it)."""
    for i, name in enumerate(table.column_names):
        table = table.set_column(i, name, table.column(i).combine_chunks())
    return table


def _latest(records: pa.Table) -> pa.Table:
    """The latest record per input (in no particular order): the greatest time, and of
    equal times the one read last (the sort is stable)."""
    usable = pc.and_(
        pc.is_valid(records["input"]), pc.is_in(records["status"], value_set=_STATUSES)
    )
    if not pc.all(usable).as_py():
        records = records.filter(usable)
    if _by_input(records["input"]) is None:
        return records  # manifest.jsonl alone, as compact wrote it: one per input
    # One chunk: a take from a chunked table concatenates it first, at every call.
    records = _one_chunk(records)
    n, inputs = records.num_rows, records["input"].chunks[0]
    order = pc.sort_indices(records, [("input", "ascending"), ("time", "ascending", "at_start")])
    # After the sort, a record is its input's latest when the next one is of another input.
    last = np.ones(n, bool)
    for start in range(0, n - 1, _CHUNK):
        ahead = inputs.take(order.slice(start, _CHUNK + 1))
        k = len(ahead) - 1
        last[start : start + k] = pc.not_equal(ahead.slice(0, k), ahead.slice(1)).to_numpy(
            zero_copy_only=False
        )
    if last.all():
        return records  # one record per input: nothing to drop, no copy
    keep = np.zeros(n, bool)
    keep[order.to_numpy()[last]] = True
    return records.filter(keep)


def read_state(dst: Location) -> tuple[pa.Table, list[str]]:
    """The latest record of each input (a SCHEMA table), and the part files it was read
    from."""
    groups = _part_groups(dst)
    main = _read_manifest(manifest_location(dst).join(MANIFEST_FILE))
    records = pa.concat_tables([main, *_read_parts(dst, groups)])
    return _latest(records), [path for group in groups for path in group]


def compact(dst: Location) -> pa.Table:
    """Fold the parts into manifest.jsonl (written whole first, parts deleted after); the
    state, as `read_state` gives it."""
    state, paths = read_state(dst)
    order = _by_input(state["input"])
    with manifest_location(dst).join(MANIFEST_FILE).open_write() as f:
        for start in range(0, state.num_rows, _CHUNK):
            chunk = (
                state.slice(start, _CHUNK)
                if order is None
                else state.take(order.slice(start, _CHUNK))
            )
            rows = chunk.to_pylist()
            f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
    if paths:
        manifest_location(dst).fs.rm(paths)
    return state


def check_job(dst: Location, settings: Mapping[str, Any]) -> None:
    """Record the settings on the first run; refuse to mix outputs of different settings."""
    loc = manifest_location(dst).join(JOB_FILE)
    wanted = json.loads(json.dumps(dict(settings)))  # as it reads back from JSON
    if loc.exists():
        before = loc.read_json()
        changed = sorted(k for k in set(before) | set(wanted) if before.get(k) != wanted.get(k))
        if changed:
            diffs = ", ".join(f"{k}: {before.get(k)!r} -> {wanted.get(k)!r}" for k in changed)
            raise UserError(
                f"{dst.url} holds outputs made with other settings ({diffs}); "
                "rerun with the same settings, or choose another --output"
            )
        return
    loc.write_json(wanted)
