"""Batch reads: every file's bytes, or the reason it could not be read; never an exception."""

from __future__ import annotations

from pipelines.common.fetch import read_many, read_problem
from pipelines.common.storage import Location


def test_s3_batch_gives_bytes_or_the_reason_for_each_file(s3_store):
    root = s3_store.location()
    files = {f"{root.url}/f{i:03d}.jpg": bytes([i]) * (i + 1) for i in range(40)}
    for url, data in files.items():
        Location.parse(url, s3_store.options).write_bytes(data)
    missing = f"{root.url}/gone.jpg"
    got = read_many([*files, missing, *files], s3_store.options)
    assert {url: got[url] for url in files} == files
    assert set(got) == {*files, missing}
    assert read_problem(got[missing]).startswith("not found")


def test_credentials_the_store_refuses_are_a_reason_not_a_failure(s3_store):
    url = s3_store.location().join("x.jpg").url
    Location.parse(url, s3_store.options).write_bytes(b"x")
    got = read_many([url], {**s3_store.options, "secret": "not-the-secret"})
    assert read_problem(got[url]).startswith("no permission to read it")


def test_local_batch_gives_bytes_or_the_reason(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    got = read_many([str(tmp_path / "a.png"), str(tmp_path / "b.png")], {})
    assert got[str(tmp_path / "a.png")] == b"png"
    assert read_problem(got[str(tmp_path / "b.png")]).startswith("not found")
