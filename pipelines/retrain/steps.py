"""The bodies of the retrain steps: each composes one verb's function and returns its record.

What a step returns is what its `step.json` keeps and what a skipped step hands on:
`outputs` (name -> URL or id) and `metrics` (name -> number), plus a few plain values.
`pipelines.retrain.workflow` decides the order, the inputs and the skipping (`StepRunner`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.common.dataset import split_fingerprint
from pipelines.common.models import load_generator_from_uri
from pipelines.common.names import Tag, judged
from pipelines.common.ray_runtime import init_ray
from pipelines.common.storage import Location
from pipelines.common.tracking import log_metrics, setup_mlflow
from pipelines.config.groups import CommonOptions
from pipelines.prepare import PrepareOptions
from pipelines.prepare import prepare as prepare_data
from pipelines.registry import evaluate as evaluate_model
from pipelines.registry import promote as promote_version
from pipelines.registry import register as register_model
from pipelines.retrain.runner import fingerprint
from pipelines.train import TrainConfig
from pipelines.train import train as train_model
from pipelines.tune import TuneOptions
from pipelines.tune import tune as tune_sweep


@dataclass(frozen=True, kw_only=True)
class RetrainPlan:
    """What every step needs: settled once by `pipelines.retrain.workflow` before the first step."""

    run_name: str
    run_dir: Location  # STORAGE_PATH/RUN_NAME
    source: Location
    prepare: PrepareOptions
    train: TrainConfig
    common: CommonOptions  # tracking URI resolved, storage path absolute
    parent_run_id: str
    name: str  # the registered model
    metric: str  # l1 | psnr | ssim: picks the sweep's best trial and decides promotion
    min_improvement: float
    eval_batch_size: int
    ray_address: str | None = None

    @property
    def data(self) -> Location:
        """The prepared dataset: prepare's output, every later step's input."""
        return self.run_dir.join("prepare", "dataset")

    def init_ray(self) -> None:
        init_ray(self.ray_address)


# -- prepare -----------------------------------------------------------------------------


def prepare(plan: RetrainPlan) -> dict[str, Any]:
    plan.init_ray()
    summary = prepare_data(plan.source, plan.data, plan.prepare)
    print(summary.line, flush=True)
    return {
        "outputs": {"data": summary.dst},
        "metrics": {
            "inputs": summary.inputs,
            "ready": summary.ready,
            "quarantined": summary.quarantined,
        },
        "counts": {split: n for split, n in summary.counts.items() if n},
        "fingerprint": summary.fingerprint,
    }


# -- train | tune ------------------------------------------------------------------------


def training_name(plan: RetrainPlan, upstream_fingerprint: str, settings: Any) -> str:
    """`RUN_NAME-<8 hex>`: the same data and settings give the same name, so a rerun after
    a crash resumes that training run, and new data or settings start a new one."""
    digest = fingerprint({"upstream": upstream_fingerprint, "settings": settings})[:8]
    return f"{plan.run_name}-{digest}"


def _in(plan: RetrainPlan, folder: str, name: str) -> tuple[TrainConfig, CommonOptions]:
    """The training settings on the prepared data, and a run `name` under RUN_FOLDER/folder."""
    common = dataclasses.replace(
        plan.common, storage_path=plan.run_dir.join(folder).url, run_name=name
    )
    return plan.train.replace(data=plan.data.url), common


def train(
    plan: RetrainPlan, name: str, *, fault_hook: dict[str, Any] | None = None
) -> dict[str, Any]:
    plan.init_ray()
    cfg, common = _in(plan, "train", name)
    result = train_model(
        cfg,
        common,
        parent_run_id=plan.parent_run_id,
        ray_address=plan.ray_address,
        fault_hook=fault_hook,
    )
    return {
        "outputs": {"checkpoint": result.best_checkpoint, "run_folder": result.run_folder},
        "metrics": result.best_metrics,
        "val": judged(result.best_metrics),
        "mlflow_run_id": result.mlflow_run_id,
        "epochs": result.epochs,
        "resumed_from_epoch": result.metrics.get("resumed_from_epoch"),
    }


def tune(plan: RetrainPlan, name: str, sweep: TuneOptions) -> dict[str, Any]:
    """The sweep instead of one training run; its best trial goes on."""
    plan.init_ray()
    cfg, common = _in(plan, "tune", name)
    result = tune_sweep(
        cfg, sweep, common, ray_address=plan.ray_address, parent_run_id=plan.parent_run_id
    )
    return {
        "outputs": {"checkpoint": result.best_checkpoint, "sweep_folder": result.sweep_folder},
        "metrics": result.best_metrics,
        "val": judged(result.best_metrics),
        "mlflow_run_id": result.best_run_id,
        "sweep_run_id": result.parent_run_id,
        "best_config": result.best_config,
        "num_trials": result.num_trials,
    }


# -- evaluate, register, promote ---------------------------------------------------------


def evaluate(plan: RetrainPlan, checkpoint: str, split: str, run_id: str | None) -> dict:
    """The metrics of `checkpoint` on `split`, logged on its training run and the parent."""
    loaded = load_generator_from_uri(checkpoint, storage_options=plan.common.storage_options)
    metrics = evaluate_model(loaded, plan.data, split, batch_size=plan.eval_batch_size)
    client = MlflowClient(plan.common.tracking_uri)
    logged = {f"{split}_{k}": v for k, v in metrics.items()}
    for target in {run_id, plan.parent_run_id} - {None, ""}:
        log_metrics(client, target, logged)
    return {
        "metrics": metrics,
        "split": split,
        "split_fingerprint": split_fingerprint(plan.data, split),
    }


def register(plan: RetrainPlan, trained: dict[str, Any], evaluated: dict[str, Any]) -> dict:
    """A new version of the registered model, once per checkpoint of this run."""
    setup_mlflow(plan.common.tracking_uri, plan.common.experiment)
    client = MlflowClient(plan.common.tracking_uri)
    checkpoint = trained["outputs"]["checkpoint"]
    key = fingerprint({"run_folder": plan.run_dir.url, "checkpoint": checkpoint})
    existing = _version_with_key(client, plan.name, key)
    if existing is not None:
        print(f"{plan.name} version {existing} was registered from {checkpoint} already")
        version = existing
    else:
        mv = register_model(
            plan.name,
            checkpoint,
            run_id=trained.get("mlflow_run_id") or None,
            storage_options=plan.common.storage_options,
            val_metrics=trained.get("val") or None,
            experiment=plan.common.experiment,
            batch_size=plan.eval_batch_size,
        )
        version = str(mv.version)
    split = evaluated["split"]
    tags = {
        Tag.REGISTER_KEY: key,
        Tag.RETRAIN_RUN_FOLDER: plan.run_dir.url,
        Tag.RETRAIN_PARENT_RUN: plan.parent_run_id,
        **{f"{split}_{k}": repr(float(v)) for k, v in evaluated["metrics"].items()},
    }
    for tag, value in tags.items():
        client.set_model_version_tag(plan.name, version, tag, value)
    return {
        "outputs": {"model": f"models:/{plan.name}/{version}"},
        "name": plan.name,
        "version": version,
    }


def _version_with_key(client: MlflowClient, name: str, key: str) -> str | None:
    try:
        found = client.search_model_versions(
            f"name = '{name}' and tags.`{Tag.REGISTER_KEY}` = '{key}'"
        )
    except MlflowException:
        return None  # no such registered model yet
    return str(found[0].version) if found else None


def promote(plan: RetrainPlan, version: str, split: str) -> dict[str, Any]:
    decision = promote_version(
        plan.name,
        version,
        plan.data,
        split,
        plan.metric,
        plan.min_improvement,
        batch_size=plan.eval_batch_size,
        tracking_uri=plan.common.tracking_uri,
    )
    print(decision.summary(), flush=True)
    return {
        "outputs": {"model": f"models:/{plan.name}/{version}"},
        "metrics": {f"candidate_{plan.metric}": decision.candidate_score},
        "promoted": decision.promoted,
        "decision": dataclasses.asdict(decision),
        "summary": decision.summary(),
    }
