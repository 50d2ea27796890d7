"""The sweep's record in storage and MLflow: the parent run, the results table, the best model.

`open_parent_run` runs before the Tuner (a continued sweep finds its run and checks that
its settings did not change); `summarise` runs after it and is idempotent, so rerunning
a finished sweep rewrites the same record.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import posixpath
import time
from typing import TYPE_CHECKING, Any

import yaml

from pipelines.common.errors import UserError
from pipelines.common.storage import Location
from pipelines.config.options import CommonOptions, ModelOptions, options_dict
from pipelines.train.options import TrainOptions
from pipelines.tune.space import SearchSpace

if TYPE_CHECKING:
    from pipelines.tune.sweep import SweepPlan, TuneOptions, TuneResult

RESULT_FILE = "result.json"  # in the sweep folder, once the sweep has finished
RESULTS_TABLE = "results.csv"  # artifact of the parent run
BEST_CONFIG = "best_config.yaml"  # artifact of the parent run: a `pix2pix train --config`
REPORTED = ("val_L1", "val_PSNR", "val_SSIM")
# The registry step reads the checkpoint of a run from this tag (pipelines.registry.registration),
# train writes `pix2pix.best_checkpoint`; the sweep's runs carry both.
CHECKPOINT_TAGS = ("checkpoint_best", "pix2pix.best_checkpoint")
MODEL_URI_TAG = "pix2pix.model_uri"  # the best generator, logged in the parent run


# --------------------------------------------------------------------------------------
# before: the parent run
# --------------------------------------------------------------------------------------


def sweep_identity(
    data_fingerprint: str,
    model: ModelOptions,
    opts: TrainOptions,
    sweep: TuneOptions,
    space: SearchSpace,
) -> dict[str, Any]:
    """What a sweep is: a rerun must match it to continue (concurrency may change)."""
    from pipelines.train.driver import identity

    settings = dataclasses.asdict(sweep)
    for free in ("max_concurrent_trials", "search_space"):  # the file's content counts
        settings.pop(free)
    return {
        "train": identity(model, opts, data_fingerprint),
        "sweep": settings,
        "search_space": space.to_yaml(),
    }


def _changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [c for k in keys for c in _changes(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def open_parent_run(
    name: str,
    folder: Location,
    data: Location,
    model: ModelOptions,
    opts: TrainOptions,
    common: CommonOptions,
    sweep: TuneOptions,
    space: SearchSpace,
    *,
    parent_run_id: str | None = None,
) -> str:
    """The sweep's MLflow run: the one a previous attempt opened, or a new one (nested
    under `parent_run_id` when given)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from pipelines.common.dataset import read_info
    from pipelines.common.tracking import git_commit, setup_mlflow
    from pipelines.tune.sweep import SWEEP_FILE

    fingerprint = str(read_info(data).get("fingerprint", ""))
    current = sweep_identity(fingerprint, model, opts, sweep, space)
    record = folder.join(SWEEP_FILE)
    previous = record.read_json() if record.exists() else None
    if previous is not None:
        changed = _changes(previous.get("identity"), current)
        if changed:
            raise UserError(
                f"sweep {folder.url} exists with other settings ({'; '.join(changed)}); "
                "rerun with its settings to continue it, or choose another --run_name"
            )
    experiment_id = setup_mlflow(common.tracking_uri, common.experiment)
    client = MlflowClient(common.tracking_uri)
    if previous is not None:
        try:
            client.update_run(previous["parent_run_id"], status="RUNNING")
            return previous["parent_run_id"]
        except MlflowException:
            pass  # another tracking store than last time: open the run there
    searched = set(space.names)
    params = {k: v for k, v in options_dict(model, opts).items() if k not in searched}
    params |= {f"tune.{k}": v for k, v in dataclasses.asdict(sweep).items()}
    tags = {
        "pix2pix.verb": "tune",
        "pix2pix.sweep_folder": folder.url,
        "pix2pix.dataset": data.url,
        "pix2pix.dataset_fingerprint": fingerprint,
        "git_commit": git_commit() or "unknown",
    }
    if parent_run_id:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    run_id = run.info.run_id
    from mlflow.entities import Param

    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])
    client.log_text(run_id, yaml.safe_dump(space.to_yaml(), sort_keys=False), "search_space.yaml")
    folder.makedirs()
    record.write_json(
        {
            "sweep_name": name,
            "identity": current,
            "parent_run_id": run_id,
            "experiment_id": experiment_id,
            "tracking_uri": common.tracking_uri,
        }
    )
    return run_id


# --------------------------------------------------------------------------------------
# after: one row per trial, the best trial, the model
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrialRow:
    trial_id: str
    config: dict[str, Any]  # the searched values
    status: str  # finished | stopped early | failed
    epochs: int
    best_epoch: int | None
    best_metrics: dict[str, float]
    best_checkpoint: str | None  # URL
    run_id: str | None  # the trial's MLflow run
    error: str


def _trial_id(result: Any) -> str:
    from pipelines.tune.sweep import trial_id_of_dir

    return trial_id_of_dir(posixpath.basename(result.path.rstrip("/")))


def _plain(value: Any) -> Any:
    """A sampled value as a Python scalar (Tune samples NumPy ones; YAML refuses those)."""
    return value.item() if hasattr(value, "item") else value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def trial_row(plan: SweepPlan, result: Any, max_epochs: int) -> TrialRow:
    """A trial's row: its best epoch whose checkpoint is still in storage."""
    metric, mode = plan.sweep.score
    trial_id = _trial_id(result)
    run_folder = plan.trials_folder.join(plan.trial_run_name(trial_id))
    run_file = run_folder.join("run.json")
    run_id = run_file.read_json().get("mlflow_run_id") if run_file.exists() else None
    config = {k: _plain(result.config[k]) for k in plan.space.names if k in result.config}
    rows = [] if result.metrics_dataframe is None else result.metrics_dataframe.to_dict("records")
    epochs = max((int(r["epoch"]) for r in rows if _finite(r.get("epoch"))), default=0)
    candidates = []
    for r in rows:
        path = r.get("checkpoint_path")
        if not isinstance(path, str) or not _finite(r.get(metric)):
            continue
        url = run_folder.join(posixpath.basename(path.rstrip("/"))).url
        candidates.append((r[metric] if mode == "min" else -r[metric], url, r))
    best_epoch, best_metrics, best_checkpoint = None, {}, None
    # Train keeps the best checkpoints by val_L1 and the latest; with another metric the
    # best epoch's checkpoint may be gone, so take the best one that is still there.
    for _, url, r in sorted(candidates, key=lambda c: c[0]):
        if Location.parse(url, plan.folder.options).exists():
            best_epoch, best_checkpoint = int(r["epoch"]), url
            best_metrics = {k: float(r[k]) for k in REPORTED if _finite(r.get(k))}
            break
    if result.error is not None:
        status = "failed"
    elif epochs < max_epochs:
        status = "stopped early"
    else:
        status = "finished"
    error = "" if result.error is None else str(result.error).strip().splitlines()[-1][:500]
    return TrialRow(
        trial_id=trial_id,
        config=config,
        status=status,
        epochs=epochs,
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        best_checkpoint=best_checkpoint,
        run_id=run_id,
        error=error,
    )


def results_csv(rows: list[TrialRow], names: list[str]) -> str:
    buf = io.StringIO()
    fields = ["trial_id", "status", "epochs", *names, "best_epoch", *REPORTED]
    fields += ["best_checkpoint", "mlflow_run_id", "error"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                "trial_id": row.trial_id,
                "status": row.status,
                "epochs": row.epochs,
                **row.config,
                "best_epoch": row.best_epoch,
                **row.best_metrics,
                "best_checkpoint": row.best_checkpoint,
                "mlflow_run_id": row.run_id,
                "error": row.error,
            }
        )
    return buf.getvalue()


def _close_trial_run(client: Any, row: TrialRow) -> None:
    """A trial stopped by ASHA never reaches train's own ending: close its run here."""
    if row.run_id is None:
        return
    tags = {"pix2pix.trial_id": row.trial_id, "pix2pix.trial_status": row.status}
    if row.best_checkpoint:
        tags |= dict.fromkeys(CHECKPOINT_TAGS, row.best_checkpoint)
    for key, value in tags.items():
        client.set_tag(row.run_id, key, value)
    if client.get_run(row.run_id).info.status == "RUNNING":
        client.set_terminated(row.run_id, status="FAILED" if row.status == "failed" else "FINISHED")


def _log_best_model(client: Any, plan: SweepPlan, best: TrialRow) -> str:
    """The best generator as a pyfunc model of the parent run (once per checkpoint)."""
    from pipelines.common.models import load_generator_from_uri
    from pipelines.registry.registration import Lineage, log_generator_model, metric_names

    tags = client.get_run(plan.parent_run_id).data.tags
    if tags.get("pix2pix.model_checkpoint") == best.best_checkpoint and tags.get(MODEL_URI_TAG):
        return tags[MODEL_URI_TAG]
    loaded = load_generator_from_uri(best.best_checkpoint, storage_options=plan.folder.options)
    lineage = Lineage(
        source=best.best_checkpoint,
        source_run_id=best.run_id,
        dataset_fingerprint=tags.get("pix2pix.dataset_fingerprint"),
        val_metrics=metric_names(best.best_metrics),
    )
    model_uri = log_generator_model(loaded, lineage, plan.parent_run_id)
    client.set_tag(plan.parent_run_id, MODEL_URI_TAG, model_uri)
    client.set_tag(plan.parent_run_id, "pix2pix.model_checkpoint", best.best_checkpoint)
    return model_uri


def summarise(plan: SweepPlan, results: Any) -> TuneResult:  # results: ray.tune.ResultGrid
    """Close the trials' runs, pick the best trial, and record it all in the parent run."""
    from mlflow import MlflowClient

    from pipelines.tune.sweep import TuneResult, max_epochs

    client = MlflowClient(plan.common.tracking_uri)
    metric, mode = plan.sweep.score
    epochs = max_epochs(plan.space, plan.model)
    rows = sorted((trial_row(plan, r, epochs) for r in results), key=lambda row: row.trial_id)
    for row in rows:
        _close_trial_run(client, row)
    client.log_text(plan.parent_run_id, results_csv(rows, plan.space.names), RESULTS_TABLE)
    scored = [r for r in rows if r.best_checkpoint and metric in r.best_metrics]
    if not scored:
        client.set_terminated(plan.parent_run_id, status="FAILED")
        reasons = "; ".join(f"{r.trial_id}: {r.error or r.status}" for r in rows)
        raise UserError(f"sweep {plan.name}: no trial produced a checkpoint ({reasons})")
    sign = 1 if mode == "min" else -1
    best = min(scored, key=lambda r: sign * r.best_metrics[metric])

    model, opts = plan.trial_options(best.config)
    best_options = options_dict(model, opts)
    client.log_text(plan.parent_run_id, yaml.safe_dump(best_options, sort_keys=True), BEST_CONFIG)
    tags = dict.fromkeys(CHECKPOINT_TAGS, best.best_checkpoint)
    tags |= {"pix2pix.best_trial_id": best.trial_id, "pix2pix.best_run_id": best.run_id or ""}
    tags |= {f"best.{k}": str(v) for k, v in best.config.items()}
    for key, value in tags.items():
        client.set_tag(plan.parent_run_id, key, value)
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(
        plan.parent_run_id,
        metrics=[Metric(k, v, now, best.best_epoch or 0) for k, v in best.best_metrics.items()],
    )
    model_uri = _log_best_model(client, plan, best)
    client.set_terminated(plan.parent_run_id, status="FINISHED")
    out = TuneResult(
        sweep_name=plan.name,
        sweep_folder=plan.folder.url,
        parent_run_id=plan.parent_run_id,
        experiment_id=client.get_run(plan.parent_run_id).info.experiment_id,
        metric=metric,
        mode=mode,
        best_trial_id=best.trial_id,
        best_run_id=best.run_id or "",
        best_config=best.config,
        best_options=best_options,
        best_checkpoint=best.best_checkpoint,
        best_metrics=best.best_metrics,
        model_uri=model_uri,
        num_trials=len(rows),
    )
    plan.folder.join(RESULT_FILE).write_json(out.to_dict())
    return out
