"""Checkpoint uploads from a low-priority child process: every file arrives, or it fails
loudly (so Ray never registers a checkpoint that is not whole)."""

from __future__ import annotations

import pytest

from pipelines.common.storage import Location
from pipelines.train.upload import upload_at_low_priority

FILES = {"checkpoint.pt": b"\x00" * 300_000 + b"end", "checkpoint.json": b"{}", "sub/x.bin": b"x"}


def _folder(tmp_path) -> str:
    for rel, data in FILES.items():
        path = tmp_path / "local" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(tmp_path / "local")


def test_a_checkpoint_folder_arrives_whole_in_the_object_store(s3_store, tmp_path):
    dest = s3_store.location().join("run", "epoch_0001")
    upload_at_low_priority(_folder(tmp_path), dest)
    assert {rel: dest.join(rel).read_bytes() for rel in FILES} == FILES


def test_a_checkpoint_folder_arrives_whole_on_local_disk(tmp_path):
    dest = Location.parse(str(tmp_path / "runs" / "run" / "epoch_0001"))
    upload_at_low_priority(_folder(tmp_path), dest)
    assert {rel: dest.join(rel).read_bytes() for rel in FILES} == FILES


def test_a_failed_upload_raises_with_the_stores_reason(s3_store, tmp_path):
    options = {**s3_store.options, "secret": "not-the-secret"}
    dest = Location.parse(s3_store.location().join("epoch_0001").url, options)
    with pytest.raises(RuntimeError, match=rf"uploading .* to {dest.url} failed: .*\S"):
        upload_at_low_priority(_folder(tmp_path), dest)
