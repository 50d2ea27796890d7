"""`pix2pix retrain` end to end: SeaweedFS S3 storage, MLflow on SQLite, the session's Ray.

A dozen pairs cropped from real photographs (8 train, 2 val, 2 test, 36 px), a tiny
U-Net (depth 5, 8 filters) trained for 2 epochs on 32 px crops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipelines.cli import main as cli_main
from pipelines.common.storage import Location
from tests.pipelines.retrain.retrain_data import STEPS, TINY, step_record, write_raw_pairs

REPO = Path(__file__).resolve().parents[3]

# The first attempt runs the CLI's own `run` with a fault hook (pipelines.train.faults):
# the training worker announces its pid after epoch 1's checkpoint and waits to be killed.
DRIVER = textwrap.dedent(
    """
    import argparse, json, sys
    from pipelines.retrain import workflow as retrain
    parser = argparse.ArgumentParser()
    retrain.add_arguments(parser)
    args = parser.parse_args(sys.argv[2:])
    sys.exit(retrain.run(args, fault_hook=json.loads(sys.argv[1])))
    """
)


@pytest.fixture(scope="module")
def source(s3_store) -> Location:
    return write_raw_pairs(s3_store.location().join("raw"))


def _config(tmp_path: Path, raw: Location, storage: Location, mlflow_uri: str, **extra):
    values = {
        "source": raw.url,
        "storage_path": storage.url,
        "run_name": "nightly",
        "tracking_uri": mlflow_uri,
        "experiment": f"retrain-{uuid.uuid4().hex[:8]}",
        "name": f"facades-{uuid.uuid4().hex[:8]}",
        "metric": "l1",
        **TINY,
        **extra,
    }
    path = tmp_path / "retrain.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, values


def _attempts(run_dir: Location) -> dict[str, tuple[str, int]]:
    out = {}
    for step in STEPS:
        rec = step_record(run_dir, step)
        if rec is not None:
            out[step] = (rec["status"], rec["attempt"])
    return out


def test_killed_in_training_rerun_continues_and_unchanged_data_skips_everything(
    tmp_path, ray_cluster, s3_store, mlflow_uri, source, capsys
):
    storage = s3_store.location().join("runs")
    config, values = _config(tmp_path, source, storage, mlflow_uri)
    run_dir = storage.join("nightly")
    address = ray_cluster.get_runtime_context().gcs_address

    # 1. The first attempt, killed (SIGKILL, its whole process group) in epoch 2.
    pid_file = tmp_path / "worker.pid"
    hook = {"pid_file": str(pid_file), "epoch": 2, "rank": 0, "wait_s": 300}
    log_path = tmp_path / "first_attempt.log"
    command = [sys.executable, "-c", DRIVER, json.dumps(hook), "--config", str(config)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "--ray_address", address],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 900  # generous: the suite shares two cores
        while not pid_file.exists():
            assert proc.poll() is None, f"ended early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no epoch 2:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _attempts(run_dir) == {"prepare": ("done", 1), "train": ("running", 1)}

    # 2. The same command again: prepare is not repeated, training resumes from epoch 1.
    assert cli_main(["retrain", "--config", str(config), "--ray_address", address]) == 0
    out, err = capsys.readouterr()
    assert "[step prepare] skipped (unchanged inputs)" in err
    assert "[step train] running (again: last attempt did not finish)" in err
    assert _attempts(run_dir) == {
        "prepare": ("done", 1),
        "train": ("done", 2),
        "evaluate": ("done", 1),
        "register": ("done", 1),
        "promote": ("done", 1),
    }
    train = step_record(run_dir, "train")["result"]
    assert train["epochs"] == 2 and train["resumed_from_epoch"] == 1
    evaluated = step_record(run_dir, "evaluate")["result"]
    assert evaluated["split"] == "test"
    assert set(evaluated["metrics"]) == {"l1", "psnr", "ssim"}

    # One registered version, and it is the champion.
    client = MlflowClient(mlflow_uri)
    name = values["name"]
    versions = client.search_model_versions(f"name = '{name}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert versions[0].tags["retrain.run_folder"] == run_dir.url

    # The run folder and the MLflow parent run point at each other; the crashed attempt
    # and its rerun are one invocation, whose child is the one training run.
    record = run_dir.join("retrain.json").read_json()
    (invocation,) = record["invocations"]
    assert invocation["status"] == "done" and invocation["attempts"] == 2
    parent = client.get_run(invocation["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["pix2pix.run_folder"] == run_dir.url
    assert parent.data.metrics["test_l1"] == pytest.approx(evaluated["metrics"]["l1"])
    training = client.get_run(train["mlflow_run_id"])
    assert training.data.tags["mlflow.parentRunId"] == parent.info.run_id
    # epoch 1 was logged once: the rerun continued training, it did not start over
    history = client.get_metric_history(train["mlflow_run_id"], "val_L1")
    assert sorted(m.step for m in history) == [1, 2]
    assert f"champion {name} v1" in out

    # 3. A scheduled run on unchanged data: every step skipped, and it says so.
    before = {step: step_record(run_dir, step)["finished_at"] for step in STEPS}
    assert cli_main(["retrain", "--config", str(config), "--ray_address", address]) == 0
    out, err = capsys.readouterr()
    assert all(f"[step {step}] skipped (unchanged inputs)" in err for step in STEPS)
    assert "every step was done already and was skipped (nothing retrained)" in out
    assert {step: step_record(run_dir, step)["finished_at"] for step in STEPS} == before
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    record = run_dir.join("retrain.json").read_json()
    assert len(record["invocations"]) == 2
    last = record["invocations"][-1]
    assert last["steps"] == dict.fromkeys(STEPS, "skipped")
    assert client.get_run(last["parent_run_id"]).data.tags["step.train"] == "skipped"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"data": "s3://elsewhere"}, "retrain prepares its own data from `source`"),
        ({"source": None}, "source is required"),
        ({"crop_size": 64}, "crop_size 64 is larger than load_size 36"),
        ({"patch_size": 286}, "too small for the 286x286 PatchGAN"),
        ({"metric": "fid"}, "metric 'fid'"),
        ({"lamda_L1": 10}, "did you mean 'lambda_L1'"),
    ],
)
def test_bad_configs_are_named_before_any_work(tmp_path, capsys, mlflow_uri, extra, message):
    src = Location.parse(str(tmp_path / "raw"))
    config, _ = _config(tmp_path, src, Location.parse(str(tmp_path / "runs")), mlflow_uri, **extra)
    assert cli_main(["retrain", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pix2pix retrain: error: ") and message in err
    assert not (tmp_path / "runs").exists()


def test_the_example_config_is_a_complete_retrain_config():
    from pipelines.retrain.workflow import load_config

    example = REPO / "infra" / "retrain.example.yaml"
    values = yaml.safe_load(example.read_text())
    cfg = load_config(argparse.Namespace(config=str(example)))
    assert cfg.retrain.source == values["source"] and cfg.retrain.name == values["name"]
    assert cfg.common.run_name == values["run_name"]
    assert cfg.prepare.load_size == values["load_size"]
    assert cfg.train.train.crop_size == values["crop_size"]
    assert cfg.train.architecture.netG == values["netG"]
    # one `metric` for the sweep and the promotion; one `seed` for prepare and training
    assert cfg.tune.metric == values["metric"]
    assert cfg.prepare.seed == cfg.train.train.seed
    assert not cfg.sweeps  # its search_space is commented out: the train step trains
