"""`pix2pix tune`: a real sweep on the session's Ray, MLflow on SQLite, local storage.

The main test interrupts a sweep for real (a `pix2pix tune` process killed with SIGKILL
once its first trial has finished), continues it in this process, and checks the record it
leaves: a child run per trial under one parent, the results table, the best config and a best
checkpoint that rebuilds a generator.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient

from pipelines.common.errors import UserError
from pipelines.common.storage import Location
from pipelines.config.groups import CommonOptions
from pipelines.train import TrainConfig, TrainOptions
from pipelines.tune import TuneOptions, tune
from pipelines.tune.search import (
    baseline_point,
    default_concurrency,
    early_stopping,
    load_space,
    search_algorithm,
)
from tests.tiny import TINY_EPOCHS, TINY_MODEL, tiny_config, to_flags

ROOT = Path(__file__).parents[3]
# The paper's space without the 286x286 ImageGAN, whose receptive field needs larger
# images than the 32 px crops of these tests.
SPACE = {
    "lambda_L1": {"loguniform": [1, 1000]},
    "patch_size": {"choice": [1, 16, 70]},
    "norm": {"choice": ["batch", "instance"]},
}
# Tiny model, two epochs: one at the initial rate, one of decay.
MODEL_FLAGS = {**TINY_MODEL, **TINY_EPOCHS}
TRAIN_FLAGS = {"crop_size": 32, "batch_size": 4, "grid_size": 2}
SWEEP_FLAGS = {"num_samples": 2, "grace_period": 1}  # concurrency: the default
SWEEP_FLAGS |= {"reduction_factor": 2, "metric": "l1"}


@pytest.fixture(scope="module")
def tune_data(tmp_path_factory, ray_cluster, photo_pairs) -> Location:
    """A dozen prepared pairs at 36 px (random 32 px crops), 9 train and 3 val."""
    from pipelines.demo.sample_data import write_dataset
    from pipelines.prepare import PrepareOptions, prepare

    root = tmp_path_factory.mktemp("tune_data")
    src = write_dataset({"train": photo_pairs[:12]}, Location.parse(str(root / "src")))
    dst = Location.parse(str(root / "prepared"))
    prepare(src, dst, PrepareOptions(layout="aligned", load_size=36, val_fraction=0.25, seed=0))
    return dst


def _options(data: Location, storage: Path, mlflow_uri: str, experiment: str, name: str):
    return (
        tiny_config(data=data.url, **TRAIN_FLAGS),
        CommonOptions(
            storage_path=str(storage), run_name=name, tracking_uri=mlflow_uri, experiment=experiment
        ),
    )


def _finished_trials(sweep_folder: Path) -> set[str]:
    """Trials that Tune's saved experiment state records as finished."""
    from ray.tune import ExperimentAnalysis

    # Trials that have not reported yet have no results to load: not worth a warning here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if not list(sweep_folder.glob("experiment_state-*.json")):
        return set()
    try:
        trials = ExperimentAnalysis(str(sweep_folder)).trials
    except Exception:  # the state file is being rewritten: read it next time
        return set()
    return {t.trial_id for t in trials if t.status == "TERMINATED"}


def _snapshot(folder: Path) -> dict[str, float]:
    """Every file under a trial's training run, with its modification time."""
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


def _children(client: MlflowClient, experiment: str, parent_run_id: str) -> list:
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_sweep_interrupted_after_a_trial_continues_and_records_the_best(
    tmp_path, ray_cluster, mlflow_uri, experiment_name, tune_data
):
    storage, name = tmp_path / "runs", "sweep-test"
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    sweep_folder = storage / name
    log_path = tmp_path / "first_attempt.log"

    # 1. The sweep as a user starts it, on this Ray; killed once a trial has finished.
    command = [sys.executable, "-m", "pipelines.cli", "tune", "--data", tune_data.url]
    command += to_flags(MODEL_FLAGS | TRAIN_FLAGS | SWEEP_FLAGS)
    command += ["--search_space", str(space_file), "--storage_path", str(storage)]
    command += ["--run_name", name, "--tracking_uri", mlflow_uri]
    command += ["--experiment", experiment_name]
    command += ["--ray_address", ray_cluster.get_runtime_context().gcs_address]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 900
            while not _finished_trials(sweep_folder):
                assert proc.poll() is None, f"the sweep ended early:\n{_tail(log_path)}"
                assert time.monotonic() < deadline, f"no progress:\n{_tail(log_path)}"
                time.sleep(1)
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have ended on its own
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finished = _finished_trials(sweep_folder)
    assert len(finished) == 1, "the interruption must leave work to do"
    before = {t: _snapshot(sweep_folder / "train" / f"trial-{t}") for t in finished}

    # 2. The same sweep again, here: Tuner.restore continues it.
    cfg, common = _options(tune_data, storage, mlflow_uri, experiment_name, name)
    sweep = TuneOptions(search_space=str(space_file), **SWEEP_FLAGS)
    result = tune(cfg, sweep, common)

    # Finished trials were not trained again: their runs are exactly as they were.
    for trial_id, files in before.items():
        assert _snapshot(sweep_folder / "train" / f"trial-{trial_id}") == files

    # One parent run, a child run per trial, all closed; each knows its best checkpoint.
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    children = _children(client, experiment_name, result.parent_run_id)
    assert len(children) == SWEEP_FLAGS["num_samples"]
    assert {c.info.status for c in children} == {"FINISHED"}
    assert result.best_run_id in {c.info.run_id for c in children}
    for child in children:
        assert child.data.tags["checkpoint_best"].startswith(str(sweep_folder / "train"))

    # The results table: a row per trial, the best of them is the sweep's best.
    table = list(csv.DictReader(io.StringIO(_artifact_text(result.parent_run_id, "results.csv"))))
    assert len(table) == SWEEP_FLAGS["num_samples"]
    assert {row["status"] for row in table} <= {"finished", "stopped early"}
    best_l1 = min(float(row["val_L1"]) for row in table)
    assert result.metric == "val_L1"
    assert result.best_metrics["val_L1"] == pytest.approx(best_l1)
    assert parent.data.metrics["val_L1"] == pytest.approx(best_l1)

    # The best trial's config: searched values and a complete `pix2pix train --config`.
    assert set(result.best_config) == set(SPACE)
    best_config = yaml.safe_load(_artifact_text(result.parent_run_id, "best_config.yaml"))
    assert best_config == result.best_options
    assert {k: best_config[k] for k in SPACE} == result.best_config
    assert best_config["ngf"] == 8 and best_config["data"] == tune_data.url
    for key, value in result.best_config.items():
        assert parent.data.tags[f"best.{key}"] == str(value)
    assert parent.data.tags["checkpoint_best"] == result.best_checkpoint
    assert parent.data.tags["pix2pix.model_uri"] == result.model_uri

    # The best checkpoint, and the model logged in the parent run, rebuild the generator.
    from pipelines.common.models import load_generator_from_uri

    for uri in (result.best_checkpoint, result.model_uri):
        loaded = load_generator_from_uri(uri, tracking_uri=mlflow_uri)
        assert loaded.config.ngf == 8 and loaded.config.norm == result.best_config["norm"]
        with torch.no_grad():
            out = loaded.module.eval()(torch.zeros(1, 3, 32, 32))
        assert out.shape == (1, 3, 32, 32) and np.isfinite(out.numpy()).all()

    # 3. A finished sweep, rerun, trains nothing and gives the same answer.
    again = tune(cfg, sweep, common)
    assert again.best_checkpoint == result.best_checkpoint
    assert again.parent_run_id == result.parent_run_id
    children = _children(client, experiment_name, result.parent_run_id)
    assert len(children) == SWEEP_FLAGS["num_samples"]


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


def _artifact_text(run_id: str, path: str) -> str:
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)).read_text()


def test_a_rerun_with_other_settings_names_what_changed(
    tmp_path, ray_cluster, mlflow_uri, experiment_name, tune_data
):
    from pipelines.tune.plan import SweepPlan
    from pipelines.tune.results import open_parent_run
    from pipelines.tune.sweep import sweep_name

    cfg, common = _options(tune_data, tmp_path, mlflow_uri, experiment_name, "s")
    sweep = TuneOptions(num_samples=4)
    plan = SweepPlan(
        name="s",
        folder=Location.parse(str(tmp_path / "s")),
        config=cfg,
        common=common,
        space=load_space(sweep, cfg),
        sweep=sweep,
        parent_run_id="",
    )
    first = open_parent_run(plan, tune_data)
    # An interrupted attempt, rerun with the same settings, keeps its MLflow run.
    assert open_parent_run(plan, tune_data) == first
    # How many trials run at once does not change what the sweep is.
    unbounded = dataclasses.replace(sweep, max_concurrent_trials=3)
    assert open_parent_run(dataclasses.replace(plan, sweep=unbounded), tune_data) == first
    with pytest.raises(UserError, match=r"num_samples: 4 -> 8.*choose another --run_name"):
        open_parent_run(dataclasses.replace(plan, sweep=TuneOptions(num_samples=8)), tune_data)
    assert sweep_name(CommonOptions(run_name=None), tune_data) == "tune-prepared"


def test_default_concurrency_leaves_each_trial_its_workers_and_two_cpus_for_ray_data(
    ray_cluster,
):
    one = TrainOptions(num_workers=1)
    # The session's Ray: 4 logical CPUs, one trial (0.2 driver + 0.5 worker + 2 for reads).
    assert default_concurrency(one, False, 0.5) == 1
    assert default_concurrency(one, False, 0.5, {"CPU": 16}) == 5
    assert default_concurrency(TrainOptions(num_workers=2), False, 0.5, {"CPU": 16}) == 5
    # GPU nodes: the GPUs are the limit, one trial per GPU with one worker each.
    assert default_concurrency(one, True, 1.0, {"CPU": 64, "GPU": 8}) == 8
    assert default_concurrency(TrainOptions(num_workers=2), True, 1.0, {"CPU": 64, "GPU": 8}) == 4
    # An autoscaling cluster before its workers are up: still one trial.
    assert default_concurrency(one, True, 1.0, {"CPU": 0}) == 1


def test_the_cli_rejects_a_bad_search_space_before_starting_anything(tmp_path, capsys):
    from pipelines.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("lambda_l1: {loguniform: [1, 1000]}\n")
    code = main(["tune", "--data", str(tmp_path), "--search_space", str(space)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"pix2pix tune: error: {space}: 'lambda_l1' is not an option" in err
    assert "did you mean 'lambda_L1'?" in err


def test_settings_no_trial_could_train_on_the_data_stop_the_sweep_before_it_starts(
    tmp_path, capsys, tune_data
):
    from pipelines.cli import main

    # unet_256 (depth 8) cannot take the 32 px crops of this dataset, whatever the trial.
    storage = tmp_path / "runs"
    flags = ["--crop_size", "32", "--storage_path", str(storage), "--run_name", "doomed"]
    assert main(["tune", "--data", tune_data.url, *flags]) == 2
    err = capsys.readouterr().err
    assert "pix2pix tune: error: --crop_size 32 must be divisible by 2^8 = 256" in err
    assert not (storage / "doomed").exists()

    # Nor a value of the space: a 286 x 286 PatchGAN leaves nothing to judge of 32 px crops.
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"patch_size": {"choice": [16, 286]}}))
    flags = [*flags, "--search_space", str(space), *to_flags(MODEL_FLAGS)]
    assert main(["tune", "--data", tune_data.url, *flags]) == 2
    err = capsys.readouterr().err
    assert "error: the search space's {'patch_size': 286} cannot train" in err
    assert "too small for the 286x286 PatchGAN" in err
    assert not (storage / "doomed").exists()


def test_a_colorization_sweep_records_the_channels_its_trials_train(
    tmp_path, ray_cluster, photo_pairs, mlflow_uri, experiment_name
):
    """Colorization data makes L -> ab: the sweep's settings, which its parent run records
    and every trial starts from, have those channels, as `pix2pix train` on it has."""
    from pipelines.demo.sample_data import encode
    from pipelines.prepare import PrepareOptions, prepare
    from pipelines.tune.plan import SweepPlan
    from pipelines.tune.results import open_parent_run
    from pipelines.tune.sweep import check_sweep

    photos = Location.parse(str(tmp_path / "photos"))
    for pair in photo_pairs[:8]:
        photos.join("train", f"{pair.key}.jpg").write_bytes(encode(pair.b, "jpg"))
    data = Location.parse(str(tmp_path / "prepared"))
    opts = PrepareOptions(load_size=36, dataset_mode="colorization", val_fraction=0.25)
    prepare(photos, data, opts)
    storage = tmp_path / "runs"
    cfg = tiny_config(data=data.url, **TRAIN_FLAGS)
    common = CommonOptions(
        storage_path=str(storage), tracking_uri=mlflow_uri, experiment=experiment_name
    )
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    sweep = TuneOptions(search_space=str(space_file), **SWEEP_FLAGS)

    checked, data, space = check_sweep(cfg, sweep, common)
    assert (checked.architecture.input_nc, checked.architecture.output_nc) == (1, 2)
    plan = SweepPlan(
        name="colour", folder=Location.parse(str(storage / "colour")), config=checked,
        common=common, space=space, sweep=sweep, parent_run_id="",
    )  # fmt: skip
    run = MlflowClient(mlflow_uri).get_run(open_parent_run(plan, data))
    assert (run.data.params["input_nc"], run.data.params["output_nc"]) == ("1", "2")


def test_the_paper_configuration_is_the_first_trial_and_optuna_refuses_a_grid():
    cfg = TrainConfig()
    space = load_space(TuneOptions(), cfg)
    first = baseline_point(space, cfg)
    assert first == [{"lambda_L1": 100.0, "patch_size": 70, "norm": "batch"}]
    # Outside the space (or over a grid) there is no baseline trial.
    assert (
        baseline_point(
            space,
            cfg.replace(patch_size=34),
        )
        == []
    )

    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    random = search_algorithm(TuneOptions(), space, 0, first, 2)
    assert isinstance(random, BasicVariantGenerator) and random.max_concurrent == 2
    assert isinstance(
        search_algorithm(TuneOptions(search_alg="optuna"), space, 0, first, 2), OptunaSearch
    )
    from pipelines.tune.space import parse_search_space

    grid = parse_search_space({"norm": {"grid": ["batch", "instance"]}}, cfg)
    with pytest.raises(UserError, match="optuna cannot search a grid"):
        search_algorithm(TuneOptions(search_alg="optuna"), grid, 0, [], 2)


def test_asha_stops_trials_early_only_before_their_last_epoch():
    from ray.tune.schedulers import ASHAScheduler

    # The paper's 200 epochs, grace period 10, factor 4: rungs at 10, 40 and 160.
    asha = early_stopping(TuneOptions(), 200)
    assert isinstance(asha, ASHAScheduler)
    rungs = re.findall(r"Iter ([0-9.]+)", asha.debug_string())
    assert sorted(float(epoch) for epoch in rungs) == [10, 40, 160]
    # A grace period as long as the training (the default's 10 epochs for a 2-epoch
    # sweep, or --grace_period 200 for the paper's): every trial trains to its end.
    assert early_stopping(TuneOptions(), 2) is None
    assert early_stopping(TuneOptions(grace_period=200), 200) is None
