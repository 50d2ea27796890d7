"""Every file under a folder or prefix, as an Arrow table: no Python object per file.

`prepare` and `translate` start from a recursive listing, and at ten million files the
Python objects of one (fsspec's dict of details per file, a kilobyte or more each, kept
again in its listings cache) would not fit on a driver. Here the listing streams in
chunks and what is kept of each file is three Arrow columns (about 100 bytes):

- S3: ListObjectsV2 without a delimiter, page by page (1,000 keys a request, as many
  requests as fsspec's `find`), nothing left in s3fs's listings cache;
- local folders: `os.scandir`, one directory at a time;
- any other fsspec filesystem: `walk`, one directory at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.common.errors import UserError
from pipelines.common.storage import Location
from pipelines.common.tables import CHUNK

# path: as the filesystem names it (`bucket/key` on S3, absolute on local disk).
LISTING_SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("version", pa.string())])


# File details that change when a file's content does, by filesystem: S3 and most object
# stores give an ETag, GCS an md5 or crc32c, local disks a modification time.
VERSION_KEYS = ("ETag", "etag", "md5Hash", "crc32c", "mtime", "LastModified", "updated")


def version(info: dict[str, Any]) -> str:
    """What changes when a file's content changes: the ETag where the store has one."""
    for name in VERSION_KEYS:
        if info.get(name) is not None:
            return str(info[name]).strip('"')
    return ""


def list_table(loc: Location) -> pa.Table:
    """LISTING_SCHEMA rows for every file under `loc` (recursive), sorted by path; empty
    when `loc` does not exist. A UserError when the store refuses the listing."""
    try:
        batches = [
            pa.RecordBatch.from_arrays(
                [
                    pa.array([p for p, _, _ in chunk], pa.string()),
                    pa.array([s for _, s, _ in chunk], pa.int64()),
                    pa.array([v for _, _, v in chunk], pa.string()),
                ],
                schema=LISTING_SCHEMA,
            )
            for chunk in _chunks(loc)
            if chunk
        ]
    except FileNotFoundError:
        return LISTING_SCHEMA.empty_table()
    except PermissionError as err:
        raise UserError(f"no permission to list {loc.url}: {err}") from None
    table = pa.Table.from_batches(batches, schema=LISTING_SCHEMA).combine_chunks()
    paths = table["path"]
    # S3 lists keys in order already: a sorted copy of the whole table only where needed.
    if pc.all(pc.less(paths.slice(0, len(paths) - 1), paths.slice(1))).as_py() is False:
        table = table.take(pc.sort_indices(table, [("path", "ascending")]))
    return table


def _chunks(loc: Location) -> Iterator[list[tuple[str, int, str]]]:
    """(path, size, version) of the files under `loc`, a chunk at a time."""
    fs = loc.fs
    root = loc.path.rstrip("/") or "/"
    if loc.is_local:
        yield from _local_chunks(root)
        return
    try:
        import s3fs  # optional: only S3 users need it installed
    except ImportError:  # no S3 support installed: not an S3 filesystem either
        s3fs = None
    if s3fs is not None and isinstance(fs, s3fs.S3FileSystem):
        yield from _s3_chunks(fs, root)
        return
    for folder, _, files in fs.walk(root, detail=True):
        yield [(info["name"], info.get("size") or 0, version(info)) for info in files.values()]
        fs.invalidate_cache(folder)  # the listings cache would keep every page


def _local_chunks(root: str) -> Iterator[list[tuple[str, int, str]]]:
    if os.path.isfile(root):
        yield [(root, os.path.getsize(root), str(os.stat(root).st_mtime))]
        return
    if not os.path.isdir(root):
        raise FileNotFoundError(root)
    folders = [root]
    while folders:
        chunk = []
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    folders.append(entry.path)
                elif entry.is_file():
                    stat = entry.stat()
                    chunk.append((entry.path, stat.st_size, str(stat.st_mtime)))
        yield chunk


def _s3_chunks(fs: Any, root: str) -> Iterator[list[tuple[str, int, str]]]:
    from s3fs.errors import translate_boto_error  # s3fs is there: fs is one of its own

    bucket, key, _ = fs.split_path(root)
    # A public coroutine API would do; s3fs's paginated listing is `_iterdir`.
    pages = fs._iterdir(bucket, delimiter="", prefix=f"{key.rstrip('/')}/" if key else "")

    async def next_chunk() -> list[tuple[str, int, str]]:
        chunk = []
        async for info in pages:  # suspended, not closed, by the break: the next call goes on
            if not info["name"].endswith("/"):  # "folder/" marker objects are not files
                chunk.append((info["name"], info.get("size") or 0, version(info)))
            if len(chunk) == CHUNK:
                break
        return chunk

    while True:
        try:
            chunk = fsspec.asyn.sync(fs.loop, next_chunk)
        except Exception as err:
            if type(err).__name__ == "ClientError":
                raise translate_boto_error(err) from err
            raise
        if not chunk:
            return
        yield chunk
