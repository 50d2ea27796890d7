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
import hashlib
import io
import os
import posixpath
import re
from collections import Counter
from dataclasses import dataclass

from pipelines.common.errors import UserError
from pipelines.common.images import IMAGE_EXTENSIONS
from pipelines.common.storage import Location
from pipelines.translate.manifest import MANIFEST_DIR

LIST_EXTENSIONS = (".txt", ".lst", ".csv")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
# Location.write_bytes writes local files as NAME.tmp-<uuid hex> and renames them.
_PARTIAL_WRITE = re.compile(r"\.tmp-[0-9a-f]{32}$")


@dataclass(frozen=True)
class Job:
    """One input and the output it becomes."""

    url: str
    rel: str  # the input's path relative to SRC (as listed; may be unsafe)
    output: str  # URL under DST


@dataclass(frozen=True)
class Listing:
    inputs: list[tuple[str, str]]  # (url, rel)
    ignored: list[str]  # files under SRC without an image extension, and hidden files
    repeated: int = 0  # entries of a list file that name a file an earlier entry names


def _has_image_ext(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _url(loc: Location, path: str) -> str:
    return path if loc.is_local else f"{loc.protocol}://{path}"


def list_inputs(src: Location, *, exclude: Location | None = None) -> Listing:
    """The images under SRC (or named by the list file SRC), sorted, with relative paths."""
    fs = src.fs
    fs.invalidate_cache(src.path)
    if not fs.exists(src.path):
        raise UserError(f"--input {src.url}: not found")
    if not fs.isdir(src.path):
        if src.url.lower().endswith(LIST_EXTENSIONS):
            urls = _read_list(src)
            inputs = _relative_to_common_folder(list(dict.fromkeys(urls)))
            return Listing(inputs, [], repeated=len(urls) - len(inputs))
        if _has_image_ext(src.url):
            return Listing([(src.url, src.name)], [])
        raise UserError(
            f"--input {src.url}: not a folder, an image ({', '.join(IMAGE_EXTENSIONS)}) "
            f"or a list of URLs ({', '.join(LIST_EXTENSIONS)})"
        )
    skip = exclude.path.rstrip("/") + "/" if exclude is not None else None
    root = src.path.rstrip("/") + "/"
    inputs, ignored = [], []
    for path in sorted(fs.find(src.path)):
        if skip and (path + "/").startswith(skip):
            continue  # DST inside SRC: earlier outputs are not inputs
        url = _url(src, path)
        rel = path[len(root) :] if path.startswith(root) else posixpath.basename(path)
        usable = _has_image_ext(path) and not posixpath.basename(path).startswith(".")
        (inputs if usable else ignored).append((url, rel))
    return Listing(inputs, [url for url, _ in ignored])


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


def plan(inputs: list[tuple[str, str]], dst: Location, *, suffix: str, fmt: str) -> list[Job]:
    """One job per input: its output URL under DST, distinct and never an input."""
    check_suffix(suffix)
    stems = [posixpath.splitext(safe_relative(rel)) for _, rel in inputs]
    names = [f"{stem}{suffix}.{fmt}" for stem, _ in stems]
    # Same stem, different extension (a.jpg, a.png): keep the extension in the name.
    clashes = Counter(names)
    names = [
        f"{stem}_{ext.lstrip('.').lower()}{suffix}.{fmt}" if clashes[name] > 1 else name
        for name, (stem, ext) in zip(names, stems, strict=True)
    ]
    # Anything still shared (e.g. names that differ only in unsafe characters): a hash.
    clashes = Counter(names)
    for i, (url, _) in enumerate(inputs):
        if clashes[names[i]] > 1:
            stem, ext = posixpath.splitext(names[i])
            names[i] = f"{stem}-{hashlib.sha1(url.encode()).hexdigest()[:8]}{ext}"

    root = dst.url.rstrip("/") + "/"
    input_urls = {url for url, _ in inputs}
    jobs = []
    for (url, rel), name in zip(inputs, names, strict=True):
        output = root + name
        if not output.startswith(root) or "/../" in f"/{name}/":
            raise AssertionError(f"output {output} escapes {root}")  # safe_relative's promise
        if output in input_urls:
            raise UserError(
                f"the output for {url} would overwrite the input {output}; "
                "choose another --output or a --suffix"
            )
        jobs.append(Job(url=url, rel=rel, output=output))
    return jobs


def existing_outputs(dst: Location) -> set[str]:
    """The URLs of the files under DST now (one listing), so that a rerun can tell a
    recorded output that was deleted since from one that is there."""
    fs = dst.fs
    fs.invalidate_cache(dst.path)
    if not fs.exists(dst.path):
        return set()
    return {_url(dst, path) for path in fs.find(dst.path)}


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
