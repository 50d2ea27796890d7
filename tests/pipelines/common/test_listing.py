"""The streamed listing: every file once, as fsspec's `find` sees it, without its cache."""

from __future__ import annotations

from pipelines.common import listing
from pipelines.common.listing import list_table, version
from pipelines.common.storage import Location


def _as_find_sees_it(loc: Location) -> list[dict]:
    loc.fs.invalidate_cache()
    found = loc.fs.find(loc.path, detail=True)
    loc.fs.invalidate_cache()
    return [
        {"path": path, "size": info["size"], "version": version(info)}
        for path, info in sorted(found.items())
    ]


def test_s3_listing_pages_through_every_key_and_keeps_no_cache(s3_store, monkeypatch):
    root = s3_store.location()
    # 2,345 keys: three ListObjectsV2 pages of 1,000, converted in chunks of 700.
    monkeypatch.setattr(listing, "CHUNK", 700)
    root.fs.pipe({f"{root.path}/d{i % 7}/sub/f{i:05d}.jpg": b"x" * (i % 13) for i in range(2345)})
    root.fs.pipe({f"{root.path}-beside/not_under_root.jpg": b"y"})  # shares the prefix string
    table = list_table(root)
    assert table.to_pylist() == _as_find_sees_it(root)
    assert table.num_rows == 2345
    assert all(v for v in table["version"].to_pylist())  # an ETag each, quotes stripped
    assert not any(key.startswith(root.path) for key in root.fs.dircache)


def test_s3_listing_of_a_missing_prefix_is_empty(s3_store):
    assert list_table(s3_store.location()).num_rows == 0


def test_local_listing_is_recursive_sorted_and_matches_find(tmp_path, monkeypatch):
    monkeypatch.setattr(listing, "CHUNK", 2)
    for rel in ("b.png", "a/c.jpg", "a/b/d.txt", "a/b/e/f.png", ".hidden/g.png", "é/ü.png"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
    (tmp_path / "empty").mkdir()
    loc = Location.parse(str(tmp_path))
    table = list_table(loc)
    assert table.to_pylist() == _as_find_sees_it(loc)
    assert table.num_rows == 6
    assert list_table(Location.parse(str(tmp_path / "missing"))).num_rows == 0
