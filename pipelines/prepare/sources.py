"""What a source holds: list it once, detect its layout, pair A with B, carve a val split.

Runs on the driver and reads no image: its output is a work table (one row per input, for
the Ray tasks) and the inputs that are unusable before any decoding (A without B, files
that are not images, duplicate keys), each with a reason.

The listing is `pipelines.common.listing.list_table`: on S3 a paginated ListObjectsV2
over the whole prefix (1,000 keys per request, no per-file calls), and the details it
returns (size, ETag or mtime) are what the fingerprint is made of, so a later run can tell
whether the source changed without reading any image. What the driver keeps per input is
Arrow columns, and the per-file rules run over chunks of them: a source of ten million
files costs a few hundred bytes a file, not a Python object each.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.common.dataset import QUARANTINE_SCHEMA, SPLITS
from pipelines.common.errors import UserError
from pipelines.common.images import IMAGE_EXTENSIONS
from pipelines.common.listing import list_table
from pipelines.common.storage import Location
from pipelines.common.tables import concat, map_rows, rows
from pipelines.prepare.inputs import (
    Sources,
    fingerprint,
    key_of,
    quarantine_table,
    split_duplicates,
)
from pipelines.prepare.manifest import MANIFEST_EXTENSIONS, manifest_sources
from pipelines.prepare.pairs import WORK_SCHEMA

LAYOUTS = ("aligned", "folders", "manifest")
SIDES = ("A", "B")


# -- listing and fingerprint ------------------------------------------------------------


def list_files(src: Location) -> pa.Table:
    """rel, size, version of every file under `src`, sorted by rel (hidden files skipped)."""
    listing = list_table(src)
    root = src.path.rstrip("/") + "/"
    rel = pc.utf8_slice_codeunits(listing["path"], len(root))  # counts code points, as len
    files = pa.table({"rel": rel, "size": listing["size"], "version": listing["version"]})
    return files.filter(pc.invert(pc.match_substring_regex(files["rel"], r"(^|/)\.")))


def _listing_fingerprint(files: pa.Table) -> str:
    size = pc.cast(files["size"], pa.string())
    return fingerprint(pa.table({"name": files["rel"], "size": size, "version": files["version"]}))


# -- layouts ----------------------------------------------------------------------------


def _is_image(relpath: str) -> bool:
    return posixpath.splitext(relpath)[1].lower() in IMAGE_EXTENSIONS


def _not_an_image(relpath: str) -> str:
    ext = posixpath.splitext(relpath)[1] or "none"
    return f"not an image file (extension {ext}; expected one of {', '.join(IMAGE_EXTENSIONS)})"


def _split_of(key: str) -> str:
    """`train/x` -> train; a file outside split folders belongs to train."""
    parts = key.split("/")
    return parts[0] if len(parts) > 1 and parts[0] in SPLITS else "train"


def _side_of(relpath: str) -> tuple[str, str] | None:
    """`A/train/x.png` or `train/A/x.png` -> ("A", "train/x.png"); None if not under A/ B/."""
    parts = relpath.split("/")
    if len(parts) > 1 and parts[0] in SIDES:
        return parts[0], "/".join(parts[1:])
    if len(parts) > 2 and parts[0] in SPLITS and parts[1] in SIDES:
        return parts[1], "/".join([parts[0], *parts[2:]])
    return None


def _urls(src: Location, rel: Any) -> pa.Array:
    """src.join(rel).url for each rel."""
    return pc.binary_join_element_wise(src.url.rstrip("/"), rel, "/")


def _duplicate_reason(key: str, first: str) -> str:
    return f"duplicate key {key!r}: {first} has the same name"


def detect_layout(src: Location, files: pa.Table) -> str:
    if files.num_rows == 0 and src.name.lower().endswith(MANIFEST_EXTENSIONS):
        return "manifest"
    sides: set[str] = set()
    loose_image = None
    for chunk in rows(files.select(["rel"])):
        for (rel,) in chunk:
            side = _side_of(rel)
            if side:
                sides.add(side[0])
            elif loose_image is None and _is_image(rel):
                loose_image = rel
    has_sides = sides == set(SIDES)
    if has_sides and loose_image:
        raise UserError(
            f"{src.url} has A/ and B/ folders and also images outside them "
            f"(e.g. {loose_image}); say which layout it is with --layout aligned|folders"
        )
    return "folders" if has_sides else "aligned"


def _aligned(src: Location, files: pa.Table) -> Sources:
    rels = files.select(["rel"])
    image = map_rows(rels, _is_image, pa.bool_())
    others = rels.filter(pc.invert(image))
    images = rels.filter(image)
    images = images.append_column("key", map_rows(images, key_of))
    kept, repeated = split_duplicates(images, ["key"], "rel")
    work = pa.table(
        {
            "key": kept["key"],
            "split": map_rows(kept.select(["key"]), _split_of),
            "a_url": _urls(src, kept["rel"]),
            "b_url": pa.nulls(kept.num_rows, pa.string()),
        },
        schema=WORK_SCHEMA,
    )
    quarantine = [
        quarantine_table(_urls(src, others["rel"]), map_rows(others, _not_an_image)),
        quarantine_table(
            _urls(src, repeated["rel"]),
            map_rows(repeated.select(["key", "first"]), _duplicate_reason),
        ),
    ]
    return Sources("aligned", work, concat(QUARANTINE_SCHEMA, quarantine))


def _folders(src: Location, files: pa.Table) -> Sources:
    rels = files.select(["rel"])
    side = map_rows(rels, lambda rel: (_side_of(rel) or (None, None))[0])
    inner = map_rows(rels, lambda rel: (_side_of(rel) or (None, None))[1])
    rels = rels.append_column("side", side).append_column("inner", inner)
    loose = rels.filter(pc.is_null(side))
    sided = rels.filter(pc.is_valid(side))
    image = map_rows(sided.select(["rel"]), _is_image, pa.bool_())
    others = sided.filter(pc.invert(image))
    images = sided.filter(image)
    images = images.append_column("key", map_rows(images.select(["inner"]), key_of))
    kept, repeated = split_duplicates(images, ["side", "key"], "rel")
    by_side = [
        kept.filter(pc.equal(kept["side"], s)).select(["key", "rel"]).rename_columns(["key", s])
        for s in SIDES
    ]
    pairs = by_side[0].join(by_side[1], "key", join_type="full outer").sort_by("key")
    both = pairs.filter(pc.and_(pc.is_valid(pairs["A"]), pc.is_valid(pairs["B"])))
    a_only = pairs.filter(pc.is_null(pairs["B"]))
    b_only = pairs.filter(pc.is_null(pairs["A"]))
    work = pa.table(
        {
            "key": both["key"],
            "split": map_rows(both.select(["key"]), _split_of),
            "a_url": _urls(src, both["A"]),
            "b_url": _urls(src, both["B"]),
        },
        schema=WORK_SCHEMA,
    )
    quarantine = [
        quarantine_table(
            _urls(src, loose["rel"]), "not under an A/ or B/ folder, so it has no pair"
        ),
        quarantine_table(
            _urls(src, others["rel"]), map_rows(others.select(["rel"]), _not_an_image)
        ),
        quarantine_table(
            _urls(src, repeated["rel"]),
            map_rows(repeated.select(["key", "first"]), _duplicate_reason),
        ),
        quarantine_table(
            _urls(src, a_only["A"]),
            map_rows(a_only.select(["key"]), lambda k: f"A without B: no B image for key {k!r}"),
        ),
        quarantine_table(
            _urls(src, b_only["B"]),
            map_rows(b_only.select(["key"]), lambda k: f"B without A: no A image for key {k!r}"),
        ),
    ]
    return Sources("folders", work, concat(QUARANTINE_SCHEMA, quarantine))


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
        return manifest_sources(src)
    files = list_files(src)
    if files.num_rows == 0:
        raise UserError(f"no files found under {src.url}")
    layout = layout or detect_layout(src, files)
    if layout == "folders" and not any(
        _side_of(rel) for chunk in rows(files.select(["rel"])) for (rel,) in chunk
    ):
        raise UserError(f"--layout folders needs {src.url}/A/... and {src.url}/B/...")
    sources = _aligned(src, files) if layout == "aligned" else _folders(src, files)
    sources.fingerprint = _listing_fingerprint(files)
    return sources


def source_fingerprint(src: Location, layout: str | None = None) -> str:
    """The fingerprint `prepare` records in dataset.json, computed again from a listing."""
    return discover(src, layout).fingerprint


# -- val carving ------------------------------------------------------------------------


def carve_val(work: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, dict[str, Any] | None]:
    """Move round(fraction * n) train pairs to val when the source has no val split.

    Pairs are ranked by a seeded hash of their key, not by listing order, so the same keys
    give the same val set everywhere, and adding pairs later moves few existing ones.
    Returns the work with the new splits and what was done (recorded in dataset.json;
    `inputs` counts the inputs moved, before decoding, so a moved input may still end in
    quarantine), or None.
    """
    split = work["split"]
    if fraction <= 0 or pc.any(pc.equal(split, "val")).as_py():
        return work, None
    train = pc.indices_nonzero(pc.equal(split, "train"))
    n = len(train)
    count = min(max(round(fraction * n), 1), n - 1) if n > 1 else 0
    if count == 0:
        return work, None
    keys = pa.table({"key": work["key"].take(train)})
    digest = lambda key: hashlib.sha256(f"{seed}:{key}".encode()).digest()  # noqa: E731
    rank = map_rows(keys, digest, pa.binary())
    moved = np.zeros(work.num_rows, dtype=bool)
    moved[train.take(pc.sort_indices(rank)[:count]).to_numpy()] = True
    split = pc.if_else(pa.array(moved), "val", split)
    carved = work.set_column(work.column_names.index("split"), "split", split)
    return carved, {"from": "train", "fraction": fraction, "seed": seed, "inputs": count}
