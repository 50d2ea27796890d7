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

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.common.errors import UserError
from pipelines.common.names import File
from pipelines.common.storage import Location

MANIFEST_DIR, MANIFEST_FILE = File.MANIFEST_DIR, File.MANIFEST
JOB_FILE, PARTS_DIR = File.TRANSLATE_JOB, File.MANIFEST_PARTS

Record = dict[str, Any]


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


def _parse(text: bytes) -> list[Record]:
    out = []
    for line in text.decode().splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            # A torn line (a crash mid-write on a filesystem without atomic rename): skip it;
            # its input is then simply translated again.
            continue
    return out


def _part_paths(dst: Location) -> list[str]:
    parts = manifest_location(dst).join(PARTS_DIR)
    fs = parts.fs
    fs.invalidate_cache(parts.path)
    if not fs.exists(parts.path):
        return []
    return sorted(p for p in fs.find(parts.path) if p.endswith(".jsonl"))


def read_state(dst: Location) -> tuple[dict[str, Record], list[str]]:
    """{input URL: latest record}, and the part files it was read from."""
    loc = manifest_location(dst)
    records: list[Record] = []
    main = loc.join(MANIFEST_FILE)
    if main.exists():
        records += _parse(main.read_bytes())
    paths = _part_paths(dst)
    if paths:
        for data in loc.fs.cat(paths, on_error="omit").values():
            records += _parse(data)
    state: dict[str, Record] = {}
    for rec in sorted(records, key=lambda r: r.get("time", 0.0)):
        if "input" in rec and rec.get("status") in ("done", "failed"):
            state[rec["input"]] = rec
    return state, paths


def compact(dst: Location) -> dict[str, Record]:
    """Fold the parts into manifest.jsonl (written whole first, parts deleted after)."""
    state, paths = read_state(dst)
    lines = "".join(json.dumps(state[k], sort_keys=True) + "\n" for k in sorted(state))
    manifest_location(dst).join(MANIFEST_FILE).write_bytes(lines.encode())
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
