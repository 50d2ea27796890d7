"""The bodies of the retrain steps: each composes one verb's function and returns its record.

What a step returns is what its `step.json` keeps and what a skipped step hands on:
`outputs` (name -> URL or id) and `metrics` (name -> number), plus a few plain values.
`pipelines.retrain.workflow` decides the order, the inputs and the skipping (`StepRunner`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from pipelines.common.storage import Location
from pipelines.config.options import CommonOptions, ModelOptions
from pipelines.prepare.job import PrepareOptions
from pipelines.retrain.runner import fingerprint
from pipelines.train.options import TrainOptions

# How a registered version knows which retrain run and which checkpoint it is, so that a
# register step that crashed after registering does not register a second version.
REGISTER_KEY_TAG = "retrain.register_key"
RUN_FOLDER_TAG = "retrain.run_folder"
PARENT_RUN_TAG = "retrain.parent_run_id"


@dataclass(frozen=True, kw_only=True)
class RetrainPlan:
    """What every step needs: settled once by `pipelines.retrain.workflow` before the first step."""

    run_name: str
    run_dir: Location  # STORAGE_PATH/RUN_NAME
    source: Location
    prepare: PrepareOptions
    model: ModelOptions
    train: TrainOptions
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
        from pipelines.common.ray_runtime import init_ray

        init_ray(self.ray_address)


def _val_metrics(best_metrics: dict[str, float]) -> dict[str, float]:
    """Train's `val_L1`, `val_PSNR`, `val_SSIM` -> {l1, psnr, ssim}."""
    names = {"val_L1": "l1", "val_PSNR": "psnr", "val_SSIM": "ssim"}
    return {names[k]: float(v) for k, v in best_metrics.items() if k in names}


# --------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------


def prepare(plan: RetrainPlan) -> dict[str, Any]:
    from pipelines.prepare.job import prepare_dataset

    plan.init_ray()
    opts = plan.prepare
    summary = prepare_dataset(plan.source, plan.data, **dataclasses.asdict(opts))
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


# --------------------------------------------------------------------------------------
# train | tune
# --------------------------------------------------------------------------------------


def training_name(plan: RetrainPlan, upstream_fingerprint: str, settings: Any) -> str:
    """`RUN_NAME-<8 hex>`: the same data and settings give the same name, so a rerun after
    a crash resumes that training run, and new data or settings start a new one."""
    digest = fingerprint({"upstream": upstream_fingerprint, "settings": settings})[:8]
    return f"{plan.run_name}-{digest}"


def train(
    plan: RetrainPlan, name: str, *, fault_hook: dict[str, Any] | None = None
) -> dict[str, Any]:
    from pipelines.train.driver import train as train_run

    plan.init_ray()
    common = dataclasses.replace(
        plan.common, storage_path=plan.run_dir.join("train").url, run_name=name
    )
    opts = dataclasses.replace(plan.train, data=plan.data.url)
    result = train_run(
        plan.model,
        opts,
        common,
        parent_run_id=plan.parent_run_id,
        ray_address=plan.ray_address,
        fault_hook=fault_hook,
    )
    return {
        "outputs": {"checkpoint": result.best_checkpoint, "run_folder": result.run_folder},
        "metrics": result.best_metrics,
        "val": _val_metrics(result.best_metrics),
        "mlflow_run_id": result.mlflow_run_id,
        "epochs": result.epochs,
        "resumed_from_epoch": result.metrics.get("resumed_from_epoch"),
    }


def tune(plan: RetrainPlan, name: str, sweep: Any) -> dict[str, Any]:
    """The sweep instead of one training run; its best trial goes on."""
    from pipelines.tune.sweep import tune as tune_run

    plan.init_ray()
    common = dataclasses.replace(
        plan.common, storage_path=plan.run_dir.join("tune").url, run_name=name
    )
    opts = dataclasses.replace(plan.train, data=plan.data.url)
    result = tune_run(
        plan.model,
        opts,
        common,
        sweep,
        ray_address=plan.ray_address,
        parent_run_id=plan.parent_run_id,
    )
    return {
        "outputs": {"checkpoint": result.best_checkpoint, "sweep_folder": result.sweep_folder},
        "metrics": result.best_metrics,
        "val": _val_metrics(result.best_metrics),
        "mlflow_run_id": result.best_run_id,
        "sweep_run_id": result.parent_run_id,
        "best_config": result.best_config,
        "num_trials": result.num_trials,
    }


# --------------------------------------------------------------------------------------
# evaluate, register, promote
# --------------------------------------------------------------------------------------


def evaluate(plan: RetrainPlan, checkpoint: str, split: str, run_id: str | None) -> dict:
    """The metrics of `checkpoint` on `split`, logged on its training run and the parent."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from pipelines.common.models import load_generator_from_uri
    from pipelines.registry.evaluation import evaluate_model, split_fingerprint

    loaded = load_generator_from_uri(checkpoint, storage_options=plan.common.storage_options)
    metrics = evaluate_model(loaded, plan.data, split, batch_size=plan.eval_batch_size)
    client = MlflowClient(plan.common.tracking_uri)
    stamp = int(time.time() * 1000)
    logged = [Metric(f"{split}_{k}", v, stamp, 0) for k, v in metrics.items()]
    for target in {run_id, plan.parent_run_id} - {None, ""}:
        client.log_batch(target, metrics=logged)
    return {
        "metrics": metrics,
        "split": split,
        "split_fingerprint": split_fingerprint(plan.data, split),
    }


def register(plan: RetrainPlan, trained: dict[str, Any], evaluated: dict[str, Any]) -> dict:
    """A new version of the registered model, once per checkpoint of this run."""
    from mlflow import MlflowClient

    from pipelines.common.tracking import setup_mlflow
    from pipelines.registry.registration import register_generator

    setup_mlflow(plan.common.tracking_uri, plan.common.experiment)
    client = MlflowClient(plan.common.tracking_uri)
    checkpoint = trained["outputs"]["checkpoint"]
    key = fingerprint({"run_folder": plan.run_dir.url, "checkpoint": checkpoint})
    existing = _version_with_key(client, plan.name, key)
    if existing is not None:
        print(f"{plan.name} version {existing} was registered from {checkpoint} already")
        version = existing
    else:
        mv = register_generator(
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
        REGISTER_KEY_TAG: key,
        RUN_FOLDER_TAG: plan.run_dir.url,
        PARENT_RUN_TAG: plan.parent_run_id,
        **{f"{split}_{k}": repr(float(v)) for k, v in evaluated["metrics"].items()},
    }
    for tag, value in tags.items():
        client.set_model_version_tag(plan.name, version, tag, value)
    return {
        "outputs": {"model": f"models:/{plan.name}/{version}"},
        "name": plan.name,
        "version": version,
    }


def _version_with_key(client: Any, name: str, key: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(
            f"name = '{name}' and tags.`{REGISTER_KEY_TAG}` = '{key}'"
        )
    except MlflowException:
        return None  # no such registered model yet
    return str(found[0].version) if found else None


def promote(plan: RetrainPlan, version: str, split: str) -> dict[str, Any]:
    from pipelines.registry.promotion import promote as promote_version

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
    record = dataclasses.asdict(decision)
    return {
        "outputs": {"model": f"models:/{plan.name}/{version}"},
        "metrics": {f"candidate_{plan.metric}": decision.candidate_score},
        "promoted": decision.promoted,
        "decision": record,
        "summary": decision.summary(),
    }
