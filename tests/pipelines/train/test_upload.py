"""Checkpoint uploads from a low-priority child process: every file arrives, or it fails
loudly (so Ray never registers a checkpoint that is not whole)."""

from __future__ import annotations

import os

import pytest

from pipelines.common.storage import Location
from pipelines.train.upload import upload_at_low_priority
from tests.cli_process import run_python

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


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's idle scheduling class")
def test_the_upload_process_takes_only_the_cpu_nothing_else_wants():
    # In a process of its own: the class cannot be left again without privileges.
    code = "import os; from pipelines.train.upload import yield_the_cpu; yield_the_cpu(); "
    code += "print(os.sched_getscheduler(0) == os.SCHED_IDLE)"
    done = run_python(code)
    assert done.stdout.strip() == "True", done.stderr
