"""What a source holds: list it once, detect its layout, pair A with B, carve a val split.

Runs on the driver and reads no image: its output is a work list (one row per input, for
the Ray tasks) and the inputs that are unusable before any decoding (A without B, files
that are not images, duplicate keys), each with a reason.

Listing is one recursive `find(detail=True)` through fsspec: on S3 that is a paginated
ListObjectsV2 over the whole prefix (1,000 keys per request, no per-file calls), and the
details (size, ETag or mtime) it returns are what the fingerprint is made of, so a later
run can tell whether the source changed without reading any image.
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.common.dataset import SPLITS
from pipelines.common.errors import UserError
from pipelines.common.images import IMAGE_EXTENSIONS
from pipelines.common.storage import Location
from pipelines.prepare.pairs import WORK_SCHEMA

LAYOUTS = ("aligned", "folders", "manifest")
MANIFEST_EXTENSIONS = (".csv", ".parquet")
SIDES = ("A", "B")


@dataclass
class Sources:
    """The inputs of a source, before any image is read."""

    layout: str
    work: list[dict[str, Any]]  # WORK_SCHEMA rows: key, split, a_url, b_url
    quarantine: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)
    fingerprint: str = ""

    @property
    def inputs(self) -> int:
        return len(self.work) + len(self.quarantine)

    def work_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.work, schema=WORK_SCHEMA)


# -- listing and fingerprint ------------------------------------------------------------


def _version(info: dict[str, Any]) -> str:
    """What changes when an object's content changes: ETag where the store has one."""
    for name in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "updated", "last_modified"):
        if info.get(name) is not None:
            return str(info[name]).strip('"')
    return ""


def _hidden(relpath: str) -> bool:
    return any(part.startswith(".") for part in relpath.split("/"))


def list_files(src: Location) -> dict[str, dict[str, Any]]:
    """relative path -> fsspec details, every file under `src` (hidden files skipped)."""
    root = src.path.rstrip("/")
    try:
        found = src.fs.find(root, detail=True)
    except FileNotFoundError:
        return {}
    except PermissionError as err:
        raise UserError(f"no permission to list {src.url}: {err}") from None
    files = {}
    for path, info in found.items():
        if info.get("type", "file") != "file":
            continue
        rel = path[len(root) + 1 :] if path.startswith(root + "/") else posixpath.basename(path)
        if not _hidden(rel):
            files[rel] = info
    return files


def fingerprint(entries: Iterable[tuple[str, Any, str]], extra: bytes = b"") -> str:
    """sha256 of sorted (name, size, version) lines (plus `extra`, e.g. a manifest)."""
    digest = hashlib.sha256(extra)
    for name, size, version in sorted((str(n), str(s), v) for n, s, v in entries):
        digest.update(f"{name}\t{size}\t{version}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def _listing_fingerprint(files: dict[str, dict[str, Any]]) -> str:
    return fingerprint((rel, info.get("size"), _version(info)) for rel, info in files.items())


# -- layouts ----------------------------------------------------------------------------


def _is_image(relpath: str) -> bool:
    return posixpath.splitext(relpath)[1].lower() in IMAGE_EXTENSIONS


def _not_an_image(relpath: str) -> str:
    ext = posixpath.splitext(relpath)[1] or "none"
    return f"not an image file (extension {ext}; expected one of {', '.join(IMAGE_EXTENSIONS)})"


def _split_of(parts: list[str]) -> str:
    """`train/x.jpg` -> train; a file outside split folders belongs to train."""
    return parts[0] if len(parts) > 1 and parts[0] in SPLITS else "train"


def _side_of(relpath: str) -> tuple[str, str] | None:
    """`A/train/x.png` or `train/A/x.png` -> ("A", "train/x.png"); None if not under A/ B/."""
    parts = relpath.split("/")
    if len(parts) > 1 and parts[0] in SIDES:
        return parts[0], "/".join(parts[1:])
    if len(parts) > 2 and parts[0] in SPLITS and parts[1] in SIDES:
        return parts[1], "/".join([parts[0], *parts[2:]])
    return None


def detect_layout(src: Location, files: dict[str, dict[str, Any]]) -> str:
    if not files and src.name.lower().endswith(MANIFEST_EXTENSIONS):
        return "manifest"
    sides = {side for rel in files if (side := _side_of(rel))}
    has_sides = {s for s, _ in sides} == set(SIDES)
    loose_images = [rel for rel in files if _is_image(rel) and _side_of(rel) is None]
    if has_sides and loose_images:
        raise UserError(
            f"{src.url} has A/ and B/ folders and also images outside them "
            f"(e.g. {loose_images[0]}); say which layout it is with --layout aligned|folders"
        )
    return "folders" if has_sides else "aligned"


def _aligned(src: Location, files: dict[str, dict[str, Any]]) -> Sources:
    out = Sources("aligned", [])
    seen: dict[str, str] = {}
    for rel in sorted(files):
        url = src.join(rel).url
        if not _is_image(rel):
            out.quarantine.append((url, _not_an_image(rel)))
            continue
        key = posixpath.splitext(rel)[0]
        if key in seen:
            out.quarantine.append((url, f"duplicate key {key!r}: {seen[key]} has the same name"))
            continue
        seen[key] = rel
        split = _split_of(rel.split("/"))
        out.work.append({"key": key, "split": split, "a_url": url, "b_url": None})
    return out


def _folders(src: Location, files: dict[str, dict[str, Any]]) -> Sources:
    out = Sources("folders", [])
    by_side: dict[str, dict[str, str]] = {"A": {}, "B": {}}  # key -> relpath
    for rel in sorted(files):
        url = src.join(rel).url
        side = _side_of(rel)
        if side is None:
            out.quarantine.append((url, "not under an A/ or B/ folder, so it has no pair"))
            continue
        if not _is_image(rel):
            out.quarantine.append((url, _not_an_image(rel)))
            continue
        name, inner = side
        key = posixpath.splitext(inner)[0]
        if key in by_side[name]:
            out.quarantine.append(
                (url, f"duplicate key {key!r}: {by_side[name][key]} has the same name")
            )
            continue
        by_side[name][key] = rel
    for key in sorted(by_side["A"].keys() | by_side["B"].keys()):
        a, b = by_side["A"].get(key), by_side["B"].get(key)
        if a and b:
            split = _split_of(key.split("/"))
            out.work.append(
                {"key": key, "split": split, "a_url": src.join(a).url, "b_url": src.join(b).url}
            )
        elif a:
            out.quarantine.append((src.join(a).url, f"A without B: no B image for key {key!r}"))
        else:
            out.quarantine.append((src.join(b).url, f"B without A: no A image for key {key!r}"))
    return out


def _read_manifest(src: Location) -> tuple[list[dict[str, Any]], bytes]:
    data = src.read_bytes()
    try:
        if src.name.lower().endswith(".parquet"):
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        else:
            rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    except Exception as err:
        raise UserError(f"{src.url}: cannot read the manifest: {err}") from None
    if rows and not {"a", "b"} <= set(rows[0]):
        raise UserError(
            f"{src.url}: a manifest needs columns a and b (URLs), found {', '.join(rows[0])}"
        )
    return rows, data


def _resolve(value: str, base: Location) -> str:
    """A manifest entry -> a URL; relative paths are relative to the manifest's folder."""
    if "://" in value or value.startswith("/"):
        return Location.parse(value, base.options).url
    return base.join(value).url


def _manifest(src: Location) -> Sources:
    rows, data = _read_manifest(src)
    base = Location(posixpath.dirname(src.url), src.options)
    out = Sources("manifest", [])
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{src.url} (row {number})"
        a, b = (str(row.get(side) or "").strip() for side in ("a", "b"))
        if not a or not b:
            missing = " and ".join(s for s, v in (("a", a), ("b", b)) if not v)
            out.quarantine.append((_resolve(a, base) if a else where, f"no {missing} in {where}"))
            continue
        a_url, b_url = _resolve(a, base), _resolve(b, base)
        split = str(row.get("split") or "train").strip()
        if split not in SPLITS:
            out.quarantine.append(
                (a_url, f"unknown split {split!r} in {where}; use one of {', '.join(SPLITS)}")
            )
            continue
        key = str(row.get("key") or "").strip() or posixpath.splitext(posixpath.basename(a))[0]
        if key in seen:
            out.quarantine.append((a_url, f"duplicate key {key!r} (also row {seen[key]})"))
            continue
        seen[key] = number
        out.work.append({"key": key, "split": split, "a_url": a_url, "b_url": b_url})
    out.fingerprint = _manifest_fingerprint(src, data, out)
    return out


def _manifest_fingerprint(src: Location, manifest: bytes, sources: Sources) -> str:
    """The manifest's bytes plus the listing of the folders its images are in.

    One listing per folder, not one request per image: manifests point into a few folders.
    """
    urls = {u for row in sources.work for u in (row["a_url"], row["b_url"])}
    urls |= {url for url, _ in sources.quarantine}
    folders: dict[str, set[str]] = {}
    for url in urls:
        folders.setdefault(posixpath.dirname(url), set()).add(url)
    entries = []
    for folder, members in folders.items():
        loc = Location(folder, src.options)
        try:
            listing = {info["name"]: info for info in loc.fs.ls(loc.path, detail=True)}
        except (FileNotFoundError, NotADirectoryError):
            listing = {}
        for url in members:
            info = listing.get(Location(url, src.options).path, {})
            entries.append((url, info.get("size", "missing"), _version(info)))
    return fingerprint(entries, extra=hashlib.sha256(manifest).digest())


def discover(src: Location, layout: str | None = None) -> Sources:
    """List `src` and turn it into work and early quarantine rows, for `layout` or the
    detected one. A UserError if SRC does not exist or holds nothing."""
    if layout is not None and layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not src.exists():
        raise UserError(f"source not found: {src.url}")
    is_file = src.fs.isfile(src.path)
    if layout == "manifest" or (layout is None and is_file):
        if not is_file:
            raise UserError(f"--layout manifest needs a CSV or Parquet file, {src.url} is not one")
        if not src.name.lower().endswith(MANIFEST_EXTENSIONS):
            raise UserError(f"{src.url}: a manifest must be a .csv or .parquet file")
        return _manifest(src)
    files = list_files(src)
    if not files:
        raise UserError(f"no files found under {src.url}")
    layout = layout or detect_layout(src, files)
    if layout == "folders" and not any(_side_of(rel) for rel in files):
        raise UserError(f"--layout folders needs {src.url}/A/... and {src.url}/B/...")
    sources = _aligned(src, files) if layout == "aligned" else _folders(src, files)
    sources.fingerprint = _listing_fingerprint(files)
    return sources


def source_fingerprint(src: Location, layout: str | None = None) -> str:
    """The fingerprint `prepare` records in dataset.json, computed again from a listing."""
    return discover(src, layout).fingerprint


# -- val carving ------------------------------------------------------------------------


def carve_val(work: list[dict[str, Any]], fraction: float, seed: int) -> dict[str, Any] | None:
    """Move round(fraction * n) train pairs to val when the source has no val split.

    Pairs are ranked by a seeded hash of their key, not by listing order, so the same keys
    give the same val set everywhere, and adding pairs later moves few existing ones.
    Returns what was done (recorded in dataset.json; `inputs` counts the inputs moved,
    before decoding, so a moved input may still end in quarantine), or None.
    """
    if fraction <= 0 or any(row["split"] == "val" for row in work):
        return None
    train = [row for row in work if row["split"] == "train"]
    count = min(max(round(fraction * len(train)), 1), len(train) - 1) if len(train) > 1 else 0
    if count == 0:
        return None
    ranked = sorted(train, key=lambda row: hashlib.sha256(f"{seed}:{row['key']}".encode()).digest())
    for row in ranked[:count]:
        row["split"] = "val"
    return {"from": "train", "fraction": fraction, "seed": seed, "inputs": count}
