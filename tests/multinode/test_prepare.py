"""`pix2pix prepare` across nodes: tasks on every worker node; a node lost mid-prepare.

The reference is the `prepared` fixture, the same source prepared on the same cluster
without a loss. Here one task on node_b writes its shard and its node is removed before
Ray has the task's result: Ray runs the task again elsewhere, which writes the same shard
again (shard names come from the keys), and the dataset must come out the same.
"""

from __future__ import annotations

import pyarrow.dataset as pads
import pytest

from pipelines.common.dataset import INFO_FILE, SPLITS
from tests.multinode import faults
from tests.multinode.conftest import LOAD_SIZE, PAIRS, PREPARE, finish, run_driver, wait_for_file

pytestmark = [pytest.mark.slow, pytest.mark.s3]

WITH_FAULT = """
import os
import ray
from tests.multinode.faults import runtime_env

ray.init(address=os.environ["RAY_ADDRESS"], runtime_env=runtime_env({fault!r}))
"""


def _rows(dst) -> dict[str, list[tuple]]:
    """Every split's rows, by key, with their image bytes; and the shard files."""
    out = {}
    for split in SPLITS:
        loc = dst.join(split)
        if not loc.exists():
            continue
        table = pads.dataset(loc.path, filesystem=loc.arrow_fs, format="parquet").to_table()
        columns = ["key", "split", "a", "b", "width", "height"]
        out[split] = sorted(zip(*(table[c].to_pylist() for c in columns), strict=True))
        out[f"{split} shards"] = sorted(p.rsplit("/", 1)[-1] for p in loc.fs.ls(loc.path))
    return out


def test_a_node_lost_mid_prepare_leaves_the_same_dataset(
    cluster, source, prepared, s3_store, mlflow_server, tmp_path
):
    marker = tmp_path / "prepare.pid"
    fault = {"target": "prepare", "node_id": cluster.node_id("node_b"), "marker": str(marker)}
    dst = s3_store.location("multinode/prepared-with-a-loss")
    script = WITH_FAULT.format(fault=fault) + PREPARE.format(
        src=source.url, dst=dst.url, load_size=LOAD_SIZE
    )
    driver = run_driver(script, cluster.driver_env(mlflow_server))
    wait_for_file(marker, driver)
    cluster.remove("node_b")
    summary, _ = finish(driver)

    # tasks ran on every worker node (the one on node_b finished its shard, then was lost)
    ran_on = set(faults.calls(marker))
    assert {cluster.node_id(n) for n in ("node_a", "node_c")} <= ran_on
    assert len(ran_on) == 3
    # complete and identical to the run without a loss: every row once, the same shards
    assert summary["ready"] == summary["inputs"] == PAIRS
    assert summary["fingerprint"] == prepared.join(INFO_FILE).read_json()["fingerprint"]
    expected, got = _rows(prepared), _rows(dst)
    assert sum(len(v) for k, v in got.items() if " " not in k) == PAIRS
    assert got == expected
    info, reference = dst.join(INFO_FILE).read_json(), prepared.join(INFO_FILE).read_json()
    for key in ("fingerprint", "counts", "inputs", "ready", "quarantined"):
        assert info[key] == reference[key], key
