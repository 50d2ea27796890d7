"""What to translate and where each output goes.

Inputs: a folder or prefix (recursive, image extensions), one image, or a list of URLs
(`.txt`/`.lst`: one per line; `.csv`: a `url` column or the first column). Outputs mirror
the inputs' paths relative to SRC (for a list: relative to the entries' common folder)
under DST, with `--suffix` and the `--format` extension.

Whatever the input names contain (`..`, absolute paths, backslashes, control characters,
S3 keys with `../` in them), an output lands inside DST: each path component is cleaned,
and the joined URL is checked against DST. Two inputs that would share an output name
(`a.jpg` and `a.png`) get names that keep them apart; an output that would overwrite an
input stops the command before any work.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import posixpath
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.common.errors import UserError
from pipelines.common.images import IMAGE_EXTENSIONS
from pipelines.common.listing import list_table
from pipelines.common.storage import Location
from pipelines.translate.manifest import MANIFEST_DIR

LIST_EXTENSIONS = (".txt", ".lst", ".csv")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
# Location.write_bytes writes local files as NAME.tmp-<uuid hex> and renames them.
_PARTIAL_WRITE = re.compile(r"\.tmp-[0-9a-f]{32}$")
# Inputs named in Python at a time: the names of a whole archive live in Arrow columns.
CHUNK = 1_000

INPUTS_SCHEMA = pa.schema([("url", pa.string()), ("rel", pa.string())])


@dataclass(frozen=True)
class Listing:
    # url, and rel: the path relative to SRC (as listed; may be unsafe)
    inputs: pa.Table
    ignored: int = 0  # files under SRC without an image extension, and hidden files
    first_ignored: str = ""  # the first of them, to show
    repeated: int = 0  # entries of a list file that name a file an earlier entry names


def inputs_table(pairs: list[tuple[str, str]]) -> pa.Table:
    """INPUTS_SCHEMA rows from (url, rel) pairs."""
    return pa.table(
        [
            pa.array([u for u, _ in pairs], pa.string()),
            pa.array([r for _, r in pairs], pa.string()),
        ],
        schema=INPUTS_SCHEMA,
    )


def _has_image_ext(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _url(loc: Location, path: str) -> str:
    return path if loc.is_local else f"{loc.protocol}://{path}"


def _urls(loc: Location, paths: pa.ChunkedArray) -> pa.ChunkedArray:
    """fsspec paths under `loc` as URLs."""
    return paths if loc.is_local else pc.binary_join_element_wise(f"{loc.protocol}://", paths, "")


def list_inputs(src: Location, *, exclude: Location | None = None) -> Listing:
    """The images under SRC (or named by the list file SRC), sorted, with relative paths."""
    fs = src.fs
    fs.invalidate_cache(src.path)
    try:
        # Not fs.isdir: on S3 that lists the whole level into s3fs's cache.
        is_dir = fs.info(src.path)["type"] == "directory"
    except FileNotFoundError:
        raise UserError(f"--input {src.url}: not found") from None
    if not is_dir:
        if src.url.lower().endswith(LIST_EXTENSIONS):
            urls = _read_list(src)
            inputs = _relative_to_common_folder(list(dict.fromkeys(urls)))
            return Listing(inputs_table(inputs), repeated=len(urls) - len(inputs))
        if _has_image_ext(src.url):
            return Listing(inputs_table([(src.url, src.name)]))
        raise UserError(
            f"--input {src.url}: not a folder, an image ({', '.join(IMAGE_EXTENSIONS)}) "
            f"or a list of URLs ({', '.join(LIST_EXTENSIONS)})"
        )
    paths = list_table(src)["path"]
    if exclude is not None:  # DST inside SRC: earlier outputs are not inputs
        skip = exclude.path.rstrip("/")
        paths = paths.filter(
            pc.invert(pc.or_(pc.equal(paths, skip), pc.starts_with(paths, skip + "/")))
        )
    tail = pc.utf8_lower(pc.utf8_slice_codeunits(paths, -max(map(len, IMAGE_EXTENSIONS))))
    image = functools.reduce(pc.or_, [pc.ends_with(tail, ext) for ext in IMAGE_EXTENSIONS])
    hidden = pc.match_substring_regex(paths, r"(^|/)\.[^/]*$")
    usable = pc.and_(image, pc.invert(hidden))
    ignored = pc.sum(pc.invert(usable)).as_py() or 0
    first = paths[pc.index(usable, False).as_py()].as_py() if ignored else ""
    if ignored:
        paths = paths.filter(usable)
    root = src.path.rstrip("/") + "/"
    inputs = pa.table(
        [_urls(src, paths), pc.utf8_slice_codeunits(paths, len(root))], schema=INPUTS_SCHEMA
    )
    return Listing(inputs, ignored=ignored, first_ignored=_url(src, first) if first else "")


def _read_list(src: Location) -> list[str]:
    text = src.read_bytes().decode("utf-8-sig", errors="replace")
    if src.url.lower().endswith(".csv"):
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = header.index("url") if "url" in header else 0
        entries = [r[col].strip() for r in rows[1:] if len(r) > col]
    else:
        entries = [line.strip() for line in text.splitlines()]
    base = posixpath.dirname(src.url)
    urls = []
    for entry in entries:
        if not entry or entry.startswith("#"):
            continue
        urls.append(
            Location.parse(
                entry if "://" in entry or entry.startswith("/") else posixpath.join(base, entry)
            ).url
        )
    if not urls:
        raise UserError(f"--input {src.url}: the list names no files")
    return urls


def _relative_to_common_folder(urls: list[str]) -> list[tuple[str, str]]:
    common = _common_folder(urls)
    return [(url, url[len(common) :].lstrip("/")) for url in urls]


def _common_folder(urls: list[str]) -> str:
    parts = [u.split("/")[:-1] for u in urls]
    common = []
    for level in zip(*parts, strict=False):
        if any(p != level[0] for p in level):
            break
        common.append(level[0])
    return "/".join(common)


def safe_relative(rel: str) -> str:
    """`rel` as a relative path that stays inside any folder it is joined to."""
    parts = []
    for part in re.split(r"[/\\]", rel):
        part = _UNSAFE.sub("_", part)
        if part in ("", "."):
            continue
        parts.append("__" if part == ".." else part)
    if parts and parts[0] == MANIFEST_DIR:
        parts[0] = f"{MANIFEST_DIR}_"  # the manifest folder is ours
    return "/".join(parts) or "unnamed"


def check_suffix(suffix: str) -> None:
    if "/" in suffix or "\\" in suffix or _UNSAFE.search(suffix) or suffix in (".", ".."):
        raise UserError(f"--suffix {suffix!r}: must be a plain name part (no / or \\)")


def plan(inputs: pa.Table, dst: Location, *, suffix: str, fmt: str) -> pa.Table:
    """Per input (`url`, `rel`): its `output` URL under DST, distinct and never an input.

    Returns the columns `url` and `output`, in the inputs' order.
    """
    check_suffix(suffix)
    url = inputs["url"]
    stem, ext, keys = _split(inputs["rel"])
    # Same stem, different extension (a.jpg, a.png): keep the extension in the name.
    # (Names of the same suffix and format share a stem exactly when they are equal.)
    shared = _shared(stem, keys)
    kept = pc.if_else(shared, pc.binary_join_element_wise("_", ext, ""), "")
    name = pc.binary_join_element_wise(stem, kept, f"{suffix}.{fmt}", "")
    del stem, ext, kept
    # Anything still shared (e.g. names that differ only in unsafe characters): a hash.
    # With distinct stems the names are distinct already.
    if shared.any():
        shared = _shared(name, _keys(name))
    if shared.any():
        name = _with_hashes(name, url, shared)

    root = dst.url.rstrip("/") + "/"
    output = pc.binary_join_element_wise(root, name, "")
    escapes = pc.match_substring_regex(name, r"(^|/)\.\.(/|$)")
    if pc.any(escapes).as_py():
        first = output.filter(escapes)[0].as_py()
        raise AssertionError(f"output {first} escapes {root}")  # safe_relative's promise
    # Only inputs under DST can be overwritten: a set of those, not of every input.
    overwrites = pc.is_in(output, value_set=url.filter(pc.starts_with(url, root)))
    if pc.any(overwrites).as_py():
        i = pc.index(overwrites, True).as_py()
        raise UserError(
            f"the output for {url[i].as_py()} would overwrite the input {output[i].as_py()}; "
            "choose another --output or a --suffix"
        )
    return pa.table({"url": url, "output": output})


def _split(rel: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray, np.ndarray]:
    """Each relative path, cleaned (`safe_relative`), as its stem, its extension (lowercase,
    without the dot), and a hash of the stem (`_shared`'s keys)."""
    stems, exts, keys = [], [], np.empty(len(rel), np.int64)
    for start in range(0, len(rel), CHUNK):
        parts = [posixpath.splitext(safe_relative(r)) for r in rel.slice(start, CHUNK).to_pylist()]
        keys[start : start + len(parts)] = [hash(stem) for stem, _ in parts]
        stems.append(pa.array([stem for stem, _ in parts], pa.string()))
        exts.append(pa.array([ext.lstrip(".").lower() for _, ext in parts], pa.string()))
    return pa.chunked_array(stems, pa.string()), pa.chunked_array(exts, pa.string()), keys


def _keys(values: pa.ChunkedArray) -> np.ndarray:
    """A hash of each value, for `_shared`."""
    keys = np.empty(len(values), np.int64)
    for start in range(0, len(values), CHUNK):
        chunk = values.slice(start, CHUNK).to_pylist()
        keys[start : start + len(chunk)] = [hash(v) for v in chunk]
    return keys


def _shared(values: pa.ChunkedArray, keys: np.ndarray) -> np.ndarray:
    """Per row, whether another row holds the same value. `keys`: a hash of each value;
    counted in numpy (8 bytes a row), and the rows whose key repeats compared exactly."""
    if not len(keys):
        return np.zeros(0, bool)
    _, where, counts = np.unique(keys, return_inverse=True, return_counts=True)
    maybe = counts[where] > 1
    if maybe.any():  # equal values, or (rarely) a collision of their hashes
        codes = values.filter(pa.array(maybe)).dictionary_encode()  # one dictionary
        codes = np.concatenate([chunk.indices.to_numpy() for chunk in codes.chunks])
        maybe[maybe] = np.bincount(codes)[codes] > 1
    return maybe


def _with_hashes(
    names: pa.ChunkedArray, urls: pa.ChunkedArray, shared: np.ndarray
) -> pa.ChunkedArray:
    """`names`, with the shared ones told apart by a hash of their input's URL."""
    chunks = []
    for start in range(0, len(names), CHUNK):
        chunk = names.slice(start, CHUNK)
        rows = np.flatnonzero(shared[start : start + CHUNK])
        if len(rows):
            chunk = chunk.to_pylist()
            urls_here = urls.slice(start, CHUNK).take(rows).to_pylist()
            for i, url in zip(rows, urls_here, strict=True):
                stem, ext = posixpath.splitext(chunk[i])
                chunk[i] = f"{stem}-{hashlib.sha1(url.encode()).hexdigest()[:8]}{ext}"
            chunk = pa.chunked_array([pa.array(chunk, pa.string())])
        chunks.extend(chunk.chunks)
    return pa.chunked_array(chunks, pa.string())


def existing_outputs(dst: Location) -> pa.ChunkedArray:
    """The URLs of the files under DST now (one listing), so that a rerun can tell a
    recorded output that was deleted since from one that is there."""
    return _urls(dst, list_table(dst)["path"])


def remove_partial_writes(dst: Location) -> int:
    """Delete the temporary files a killed run left in a local DST; how many there were.

    (Object stores have none: a PUT is atomic.)
    """
    if not dst.is_local or not os.path.isdir(dst.path):
        return 0
    removed = 0
    for folder, _, names in os.walk(dst.path):
        for name in names:
            if _PARTIAL_WRITE.search(name):
                os.remove(os.path.join(folder, name))
                removed += 1
    return removed
