"""Storage every node sees: what a multi-node cluster refuses, what it accepts, and a node
that cannot reach the store or the tracking server.

One driver joins the cluster (with a fourth node, `node_bad`, whose own environment points
the object store at a closed port and sends HTTP through a proxy that is not there) and:

1. asks each verb for a node-local path: refused before any work, saying why and what
   to use; nothing is created;
2. prepares a local folder declared shared (PIX2PIX_SHARED_PATHS): accepted, run on the
   cluster's nodes (they share this machine's disk, as nodes share an NFS mount);
3. trains on the object store: refused before any work, naming node_bad, the URLs it
   cannot reach (the store, the MLflow server) and why; the nodes that can are not named.
"""

from __future__ import annotations

import socket

import pytest

from pipelines.common.cluster import SHARED_PATHS_ENV
from pipelines.common.storage import Location
from pipelines.demo.sample_data import make_pairs, write_dataset
from tests.multinode.conftest import finish, run_driver

pytestmark = [pytest.mark.slow, pytest.mark.s3]

SCRIPT = """
import yaml
from pipelines.common.errors import UserError
from pipelines.config.groups import CommonOptions
from pipelines.prepare import PrepareOptions, prepare
from pipelines.train import train
from pipelines.translate import TranslateOptions, translate
from pipelines.tune import TuneOptions, tune
from tests.tiny import tiny_config

results = {{}}

def attempt(name, fn):
    try:
        value = fn()
    except UserError as err:
        results[name] = "refused: " + str(err)
    else:
        results[name] = "done: " + str(value)

s3 = CommonOptions(storage_path={s3_runs!r}, run_name="refused", experiment="multinode")
local = CommonOptions(storage_path={private!r} + "/runs", run_name="refused")
db = "sqlite:///" + {private!r} + "/mlflow.db"
sqlite = CommonOptions(storage_path={s3_runs!r}, tracking_uri=db)
cfg = tiny_config(data={data!r})
space = {private_parent!r} + "/space.yaml"
with open(space, "w") as f:
    yaml.safe_dump({{"lambda_L1": {{"choice": [10.0, 100.0]}}}}, f)

attempt("train --storage_path", lambda: train(cfg, local))
attempt("train --tracking_uri", lambda: train(cfg, sqlite))
sweep = TuneOptions(search_space=space, num_samples=1)
attempt("tune --storage_path", lambda: tune(cfg, sweep, local))
attempt("prepare SRC", lambda: prepare({private!r} + "/src", {s3_prepared!r}))
attempt("translate --output", lambda: translate(TranslateOptions(
    model=space, input={s3_archive!r}, output={private!r} + "/out")))
attempt("prepare, declared shared", lambda: prepare(
    {shared!r} + "/src", {shared!r} + "/prepared", PrepareOptions(load_size=36)).line)
attempt("train, node_bad", lambda: train(cfg, s3))
emit(results)
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_local_paths_are_refused_unless_shared_and_a_node_that_cannot_reach_is_named(
    cluster, prepared, s3_store, mlflow_server, tmp_path
):
    shared, private = tmp_path / "shared", tmp_path / "private"
    pairs = make_pairs(4, size=48, seed=1)
    write_dataset({"train": pairs[:3], "val": pairs[3:]}, Location.parse(str(shared / "src")))
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    cluster.add(
        "node_bad",
        AWS_ENDPOINT_URL_S3=nowhere,
        http_proxy=nowhere,
        HTTP_PROXY=nowhere,
        no_proxy="",
        NO_PROXY="",
    )
    script = SCRIPT.format(
        s3_runs=s3_store.location("multinode/refused").url,
        s3_prepared=s3_store.location("multinode/refused-prepared").url,
        s3_archive=s3_store.location("multinode/refused-archive").url,
        data=prepared.url,
        private=str(private / "work"),
        private_parent=str(private),
        shared=str(shared),
    )
    # The driver's own copy of the data: there, but on no other node.
    write_dataset({"train": pairs[:3], "val": pairs[3:]}, Location.parse(str(private / "work/src")))
    env = cluster.driver_env(mlflow_server, **{SHARED_PATHS_ENV: str(shared)})
    results, _ = finish(run_driver(script, env))

    local = {
        "train --storage_path": f"--storage_path {private}/work/runs",
        "tune --storage_path": f"--storage_path {private}/work/runs",
        "train --tracking_uri": f"--tracking_uri sqlite:///{private}/work/mlflow.db",
        "prepare SRC": f"SRC {private}/work/src",
        "translate --output": f"--output {private}/work/out",
    }
    for case, named in local.items():
        message = results[case]
        assert message.startswith(
            f"refused: {named}: a local path, and this Ray cluster has 5 nodes"
        ), (case, message)
        assert "object store" in message and SHARED_PATHS_ENV in message, message
    assert "MLflow server" in results["train --tracking_uri"]
    made = sorted(str(p.relative_to(private)) for p in private.rglob("*") if "src" not in p.parts)
    assert made == ["space.yaml", "work"], made  # nothing started: no runs, outputs or database

    assert results["prepare, declared shared"] == (
        f"done: 4 pairs: 4 ready, 0 quarantined (see {shared}/prepared/quarantine.parquet)"
    )

    message = results["train, node_bad"]
    assert message.startswith("refused: every node of the cluster must reach"), message
    header, *lines = message.splitlines()
    assert header.endswith("these cannot:"), message
    bad = [line.strip() for line in lines if "resources node_bad" in line]
    store = [p for p in bad if p.startswith(f"--data {prepared.url} from")]
    assert store and "cannot reach the object store" in store[0], message
    assert f"{nowhere}" in store[0] and "on that node" in store[0], message
    server = [p for p in bad if p.startswith(f"--tracking_uri {mlflow_server} from")]
    assert server and "cannot reach the MLflow tracking server" in server[0], message
    others = [line for line in lines if "node_bad" not in line]
    assert others == [], others  # the nodes that can reach both are not named
