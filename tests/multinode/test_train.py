"""`pix2pix train` across nodes: two DDP workers on two nodes, one node lost in epoch 2.

The run's checkpoints go to the object store; the worker group Ray Train restarts after
the loss runs on the nodes that are left and resumes from the epoch-1 checkpoint, which
the new rank 0, on another node than the one that wrote it, reads from there.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from pipelines.common import checkpoints
from tests.multinode.conftest import finish, run_driver, wait_for_file

pytestmark = [pytest.mark.slow, pytest.mark.s3]

TRAIN = """
from pipelines.config.groups import CommonOptions
from pipelines.train import train
from tests.tiny import tiny_config

# 2 CPUs a worker on nodes of 3: no node holds both workers (as no 1-GPU node holds two
# GPU workers), and each keeps a CPU for Ray Data's reads.
cfg = tiny_config(data={data!r}, num_workers=2, cpus_per_worker=2, max_failures=1, batch_size=2)
common = CommonOptions(storage_path={storage!r}, run_name="across-nodes", experiment="multinode")
result = train(cfg, common, fault_hook={{"pid_file": {pid_file!r}, "epoch": 2, "rank": 0}})
emit(result.to_dict())
"""


def test_ddp_across_nodes_survives_the_loss_of_rank_0s_node(
    cluster, prepared, s3_store, mlflow_server, tmp_path
):
    storage = s3_store.location("multinode/runs")
    pid_file = tmp_path / "rank0.pid"
    script = TRAIN.format(data=prepared.url, storage=storage.url, pid_file=str(pid_file))
    driver = run_driver(script, cluster.driver_env(mlflow_server))

    # Rank 0 waits after the first step of epoch 2, with epoch 1's checkpoint registered.
    rank0 = int(wait_for_file(pid_file, driver))
    workers = cluster.processes("RayTrainWorker")
    assert len(workers) == 2 and len(set(workers.values())) == 2, workers  # a node each
    victim = cluster.name_of_pid(rank0)
    cluster.remove(victim)

    result, out = finish(driver)
    assert result["epochs"] == 2
    assert result["metrics"]["resumed_from_epoch"] == 1
    folder = storage.join("across-nodes")
    assert f"resuming across-nodes after epoch 1 from {folder.url}/epoch_0001" in out
    for epoch in ("epoch_0001", "epoch_0002"):
        assert folder.join(epoch, checkpoints.CHECKPOINT_FILE).exists()
    meta = checkpoints.read_meta(result["latest_checkpoint"], storage.options)
    assert meta["epoch"] == 2

    # one MLflow run, its epochs in order, none twice
    client = MlflowClient(mlflow_server)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    runs = client.search_runs([run.info.experiment_id], "attributes.run_name = 'across-nodes'")
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    for key in ("G_L1", "val_L1", "resumed_from_epoch"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert steps == [1, 2], (key, steps)
