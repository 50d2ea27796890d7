"""Register and promote on MLflow (SQLite), the pyfunc model, and `mlflow models serve`.

The module builds one registry history, in order:

    v1 untrained          promote -> champion (there was none)
    v2 trained            promote -> champion (better than v1)
    v3 another untrained  promote -> refused: champion stays v2, v3 is the challenger
"""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from pipelines.cli import main
from pipelines.common import checkpoints
from pipelines.common.dataset import read_info, split_fingerprint
from pipelines.common.errors import UserError
from pipelines.common.models import load_generator_from_uri
from pipelines.common.tracking import git_commit
from pipelines.registry import evaluate, register
from pipelines.registry.promotion import decide, promote
from pix2pix_core import to_tensor, to_uint8
from pix2pix_core.geometry import resample
from tests.cli_process import run_python
from tests.pipelines.registry.registry_data import (
    CROP,
    free_port,
    path_with_venv,
    registry_data,
    stop_server,
    wait_until_up,
)

NAME = "facades-test"


def _experiment(name: str, artifacts: Path) -> str:
    """An experiment whose artifacts live under the test's tmp folder, not ./mlruns."""
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    return mlflow.create_experiment(name, artifact_location=artifacts.as_uri())


@pytest.fixture(scope="module")
def history(ray_cluster, tmp_path_factory, photo_pairs, mlflow_uri):
    data = registry_data(tmp_path_factory, photo_pairs)
    mlflow.set_tracking_uri(mlflow_uri)
    experiment = "test-registry"
    _experiment(experiment, tmp_path_factory.mktemp("registry_artifacts"))
    versions, decisions = [], []
    for source in (data.untrained, data.trained):
        mv = register(NAME, str(source), data=data.dst, experiment=experiment)
        versions.append(mv)
        decisions.append(promote(NAME, mv.version, data.dst))
    # The third through the command line.
    args = ["--tracking_uri", mlflow_uri, "--experiment", experiment]
    assert main(["register", "--checkpoint", str(data.untrained_other), "--name", NAME, *args]) == 0
    versions.append(MlflowClient(mlflow_uri).get_model_version(NAME, "3"))
    decisions.append(promote(NAME, "3", data.dst))
    return data, versions, decisions


@pytest.fixture
def client(mlflow_uri) -> MlflowClient:
    mlflow.set_tracking_uri(mlflow_uri)
    return MlflowClient(mlflow_uri)


def test_versions_carry_their_lineage(history, client):
    data, versions, _ = history
    assert [str(mv.version) for mv in versions] == ["1", "2", "3"]
    fingerprint = read_info(data.dst)["fingerprint"]
    v2 = client.get_model_version(NAME, "2")
    assert v2.tags["source"] == str(data.trained)
    assert v2.tags["dataset_fingerprint"] == fingerprint
    assert v2.tags["git_commit"] == git_commit()
    measured = evaluate(load_generator_from_uri(str(data.trained)), data.dst, "val")
    for metric, value in measured.items():
        assert float(v2.tags[f"val_{metric}"]) == pytest.approx(value)
    # Registered without --data: no measured metrics, but still the lineage it knows.
    v3 = client.get_model_version(NAME, "3")
    assert v3.tags["source"] == str(data.untrained_other)
    assert "val_l1" not in v3.tags


def test_promotion_history(history, client):
    _, _, (first, second, third) = history
    assert first.promoted and first.champion_version is None
    assert second.promoted and second.champion_version == "1"
    assert second.candidate_score < second.champion_score  # l1: lower is better
    assert not third.promoted and third.champion_version == "2"
    assert "not better" in third.reason
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "3"


def test_refusal_is_recorded_on_both_versions(history, client):
    data, _, (_, second, third) = history
    expected = {
        "promotion.decision": "refused",
        "promotion.metric": "l1",
        "promotion.split": "val",
        "promotion.split_fingerprint": split_fingerprint(data.dst, "val"),
        "promotion.candidate_version": "3",
        "promotion.champion_version": "2",
        "promotion.candidate_score": repr(third.candidate_score),
        "promotion.champion_score": repr(third.champion_score),
    }
    for version in ("2", "3"):
        tags = client.get_model_version(NAME, version).tags
        assert {k: tags.get(k) for k in expected} == expected
    # Both scores come from the same evaluation code on the same split.
    assert third.champion_score == pytest.approx(second.candidate_score)


def test_promote_cli_prints_the_decision_and_exits_zero_on_refusal(history, mlflow_uri, capsys):
    data, _, _ = history
    args = ["promote", "--name", NAME, "--candidate", "3", "--data", data.dst.url]
    assert main([*args, "--metric", "ssim", "--tracking_uri", mlflow_uri]) == 0
    out = capsys.readouterr().out
    assert f"{NAME} v3: REFUSED" in out and "higher is better" in out
    assert str(MlflowClient(mlflow_uri).get_model_version_by_alias(NAME, "champion").version) == "2"

    assert main([*args, "--metric", "accuracy", "--tracking_uri", mlflow_uri]) == 2
    assert "unknown metric 'accuracy'" in capsys.readouterr().err
    with pytest.raises(UserError, match="no version 9"):
        promote(NAME, "9", data.dst)


def test_decide_is_direction_aware_and_needs_the_margin():
    assert decide("l1", 0.10, 0.20, 0.05)[0]
    assert not decide("l1", 0.20, 0.10, 0.0)[0]
    assert not decide("l1", 0.18, 0.20, 0.05)[0]  # better, but by less than the margin
    assert decide("psnr", 21.0, 20.0, 0.5)[0]
    assert not decide("psnr", 20.0, 21.0, 0.0)[0]
    assert not decide("ssim", 0.5, 0.5, 0.0)[0]  # a tie is not better
    assert decide("ssim", 0.1, None, 0.0)[0]  # no champion yet


def test_pyfunc_champion_translates_uint8_batches(history, client):
    data, _, _ = history
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    rng = np.random.default_rng(0)
    odd = rng.integers(0, 256, (2, 40, 36, 3), dtype=np.uint8)  # not divisible by 32
    out = model.predict(odd)
    assert out.dtype == np.uint8 and out.shape == odd.shape

    # As `pix2pix translate` by default: each image resampled to the model's size (this
    # model recorded no load_size), through the generator alone with its own batch-norm
    # statistics (the paper's test time), resampled back.
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    out = model.predict(images)
    net = load_generator_from_uri(str(data.trained)).module.train()
    with torch.no_grad():
        expected = [
            resample(to_uint8(net(to_tensor(resample(im, CROP, CROP)[None])))[0], 64, 64)
            for im in images
        ]
    assert np.abs(out.astype(int) - np.stack(expected).astype(int)).max() <= 1


def test_pyfunc_model_loads_without_ray(history, mlflow_uri):
    script = (
        "import sys, numpy as np, mlflow\n"
        "sys.modules['ray'] = None  # any import of ray now fails\n"
        f"mlflow.set_tracking_uri({mlflow_uri!r})\n"
        f"m = mlflow.pyfunc.load_model('models:/{NAME}@champion')\n"
        "out = m.predict(np.zeros((1, 32, 32, 3), np.uint8))\n"
        "assert 'pipelines' not in sys.modules  # the model carries the code it needs\n"
        "print(out.dtype, out.shape)\n"
    )
    result = run_python(script, cwd=Path("/"))  # far from this project's source
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "uint8 (1, 32, 32, 3)"


def test_mlflow_models_serve_answers_a_request(history, mlflow_uri, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (open while the server runs)
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    server = subprocess.Popen(
        [mlflow_cli, "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        # As in an activated environment: `mlflow models serve` execs `uvicorn` from PATH.
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "PATH": path_with_venv()},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server, tmp_path / "serve.log")
        images = np.random.default_rng(1).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": images.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = np.asarray(json.loads(response.read())["predictions"])
        assert predictions.shape == images.shape
        assert predictions.min() >= 0 and predictions.max() <= 255
        local = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(images)
        np.testing.assert_array_equal(predictions, local)
    finally:
        stop_server(server)
        log.close()


def test_register_a_training_run_by_its_id(history, client, tmp_path, mlflow_uri, capsys):
    """`--run RUN_ID`: the run's best checkpoint, the model logged into the run itself, and
    the metrics and fingerprint the checkpoint recorded for its epoch."""
    data, _, _ = history
    epoch = tmp_path / "run" / "epoch_0003"
    epoch.mkdir(parents=True)
    extra = {
        "epoch": 3,
        "metrics": {"val_L1": 0.125, "val_PSNR": 21.5, "val_SSIM": 0.625, "G_GAN": 0.7},
        "dataset_fingerprint": "f" * 16,
        "crop_size": 32,
        "eval_mode": True,
    }
    checkpoints.write(str(epoch), data.model, extra)
    experiment = _experiment("test-register-run", tmp_path / "artifacts")
    run = client.create_run(experiment, tags={"pix2pix.best_checkpoint": str(epoch)})
    client.set_terminated(run.info.run_id)

    flags = ["--tracking_uri", mlflow_uri, "--experiment", "test-register-run"]
    assert main(["register", "--run", run.info.run_id, "--name", "from-run", *flags]) == 0
    printed = capsys.readouterr()
    assert "registered from-run version 1" in printed.out
    # not a terminal: no progress bars, which a log file would keep as one long line
    assert "Downloading artifacts" not in printed.err
    mv = client.get_model_version("from-run", "1")
    assert mv.run_id == run.info.run_id  # logged into the training run
    assert list((tmp_path / "artifacts").rglob("generator.pt"))  # in its experiment's store
    assert client.get_run(run.info.run_id).info.status == "FINISHED"  # and left as it was
    assert mv.tags["source"] == str(epoch)
    assert mv.tags["source_run_id"] == run.info.run_id
    assert mv.tags["dataset_fingerprint"] == "f" * 16
    assert (mv.tags["val_l1"], mv.tags["val_psnr"], mv.tags["val_ssim"]) == (
        "0.125",
        "21.5",
        "0.625",
    )
    loaded = load_generator_from_uri("models:/from-run/1")
    assert loaded.eval_mode is True and loaded.crop_size == 32
    with pytest.raises(UserError, match=r"needs a version or an alias: models:/from-run/1, "):
        load_generator_from_uri("models:/from-run")

    assert main(["register", "--run", "0" * 32, "--name", "from-run", *flags]) == 2
    assert f"no MLflow run {'0' * 32}" in capsys.readouterr().err
    # A name MLflow would refuse is refused before anything is logged into the run.
    logged = client.list_artifacts(run.info.run_id)
    assert main(["register", "--run", run.info.run_id, "--name", "team/facades", *flags]) == 2
    assert "--name 'team/facades': a registered model's name cannot contain" in (
        capsys.readouterr().err
    )
    assert client.list_artifacts(run.info.run_id) == logged
