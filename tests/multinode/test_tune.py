"""`pix2pix tune` across nodes: two trials at once on two nodes, one node lost.

Each trial trains with one worker of 2 CPUs, on nodes of 3: no node holds both. Rank 0 of
each trial pauses after the first step of epoch 2 (epoch 1's checkpoint registered); the
node of one of them is removed, the other is let go. The lost trial's worker group starts
again on the node left free and resumes from epoch 1 (and a trial whose driver was on the
lost node starts again, as Tune's failure config says). The sweep completes, and its
MLflow parent run holds every trial, each finished.
"""

from __future__ import annotations

import re
import time

import pytest
from mlflow import MlflowClient

from tests.multinode.conftest import finish, run_driver
from tests.multinode.test_prepare import WITH_FAULT

pytestmark = [pytest.mark.slow, pytest.mark.s3]

TRIALS = 2
TUNE = """
import yaml
from pipelines.config.groups import CommonOptions
from pipelines.tune import TuneOptions, tune
from tests.tiny import tiny_config

with open({space!r}, "w") as f:
    yaml.safe_dump({{"lambda_L1": {{"choice": [10.0, 100.0]}}}}, f)
cfg = tiny_config(data={data!r}, num_workers=1, cpus_per_worker=2, max_failures=1, batch_size=2)
sweep = TuneOptions(search_space={space!r}, num_samples={trials}, grace_period=2)
common = CommonOptions(storage_path={storage!r}, run_name="sweep", experiment="multinode-tune")
result = tune(cfg, sweep, common)
emit({{"parent": result.parent_run_id, "trials": result.num_trials}})
"""


def _paused(folder, driver, count: int, timeout: float = 300.0) -> dict[str, int]:
    """{training run: pid} of the rank-0 workers that paused, once `count` have."""
    deadline = time.monotonic() + timeout
    while True:
        found = {p.name.removesuffix(".pid"): p for p in folder.glob("*.pid")}
        if len(found) >= count:
            return {name: int(path.read_text()) for name, path in found.items()}
        if driver.poll() is not None:
            out, _ = driver.communicate()
            raise AssertionError(f"the sweep ended before {count} trials paused:\n{out[-6000:]}")
        assert time.monotonic() < deadline, f"{count} trials did not pause in {timeout:.0f} s"
        time.sleep(0.2)


def test_a_sweep_across_nodes_survives_the_loss_of_a_trials_node(
    cluster, prepared, s3_store, mlflow_server, tmp_path
):
    faults = tmp_path / "faults"
    faults.mkdir()
    fault = {"target": "train", "epoch": 2, "marker": str(faults)}
    job = TUNE.format(
        space=str(tmp_path / "space.yaml"),
        data=prepared.url,
        trials=TRIALS,
        storage=s3_store.location("multinode/sweeps").url,
    )
    driver = run_driver(WITH_FAULT.format(fault=fault) + job, cluster.driver_env(mlflow_server))

    # both trials at once, on two different nodes
    paused = _paused(faults, driver, TRIALS)
    nodes = {run: cluster.name_of_pid(pid) for run, pid in paused.items()}
    assert len(set(nodes.values())) == TRIALS, nodes
    lost_run, lost_node = sorted(nodes.items())[0]
    cluster.remove(lost_node)
    (faults / "release").touch()
    result, out = finish(driver)

    assert result["trials"] == TRIALS
    assert re.search(rf"resuming {re.escape(lost_run)} after epoch 1 from ", out), out[-6000:]
    client = MlflowClient(mlflow_server)
    parent = client.get_run(result["parent"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result['parent']}'"
    )
    assert sorted(c.info.run_name for c in children) == sorted(paused)
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_L1")]
        assert steps == [1, 2], (child.info.run_name, steps)
        if child.info.run_name == lost_run:  # epoch 2 trained on from epoch 1's checkpoint
            resumed = client.get_metric_history(child.info.run_id, "resumed_from_epoch")
            assert {m.step: m.value for m in resumed}[2] == 1, resumed
