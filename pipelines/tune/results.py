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
from typing import Any

import yaml
from mlflow import MlflowClient

from pipelines.common.dataset import read_info
from pipelines.common.errors import UserError
from pipelines.common.models import load_generator_from_uri
from pipelines.common.names import METRICS, File, Tag, judged
from pipelines.common.storage import Location
from pipelines.common.tracking import log_metrics, open_run
from pipelines.registry.registration import Lineage, log_generator_model
from pipelines.tune.plan import SweepPlan, TuneResult, max_epochs, sweep_identity, trial_id_of_dir

REPORTED = tuple(m.reported for m in METRICS.values())
# Train tags its best checkpoint with ours; Tune's own name goes beside it on a sweep's runs.
CHECKPOINT_TAGS = (Tag.TUNE_BEST_CHECKPOINT, Tag.BEST_CHECKPOINT)


# -- before: the parent run ----------------------------------------------------------------


def _changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [c for k in keys for c in _changes(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def open_parent_run(plan: SweepPlan, data: Location, *, parent_run_id: str | None = None) -> str:
    """The sweep's MLflow run: the one a previous attempt opened, or a new one (nested
    under `parent_run_id` when given)."""
    fingerprint = str(read_info(data).get("fingerprint", ""))
    current = sweep_identity(fingerprint, plan.config, plan.sweep, plan.space)
    record = plan.folder.join(File.SWEEP)
    previous = record.read_json() if record.exists() else None
    if previous is not None:
        changed = _changes(previous.get("identity"), current)
        if changed:
            raise UserError(
                f"sweep {plan.folder.url} exists with other settings ({'; '.join(changed)}); "
                "rerun with its settings to continue it, or choose another --run_name"
            )
    searched = set(plan.space.names)
    params = {k: v for k, v in plan.config.flat().items() if k not in searched}
    params |= {f"tune.{k}": v for k, v in dataclasses.asdict(plan.sweep).items()}
    tracked = open_run(
        plan.common.tracking_uri,
        plan.common.experiment,
        plan.name,
        params=params,
        tags={
            Tag.VERB: "tune",
            Tag.SWEEP_FOLDER: plan.folder.url,
            Tag.DATASET: data.url,
            Tag.DATASET_FINGERPRINT: fingerprint,
        },
        resume_run_id=(previous or {}).get("parent_run_id"),
        parent_run_id=parent_run_id,
    )
    if not tracked.resumed:
        client = MlflowClient(plan.common.tracking_uri)
        space = yaml.safe_dump(plan.space.to_yaml(), sort_keys=False)
        client.log_text(tracked.run_id, space, File.SEARCH_SPACE)
        plan.folder.makedirs()
        record.write_json(
            {
                "sweep_name": plan.name,
                "identity": current,
                "parent_run_id": tracked.run_id,
                "experiment_id": tracked.experiment_id,
                "tracking_uri": plan.common.tracking_uri,
            }
        )
    return tracked.run_id


# -- after: one row per trial, the best trial, the model -----------------------------------


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


def _plain(value: Any) -> Any:
    """A sampled value as a Python scalar (Tune samples NumPy ones; YAML refuses those)."""
    return value.item() if hasattr(value, "item") else value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def trial_row(plan: SweepPlan, result: Any, max_epochs: int) -> TrialRow:
    """A trial's row: its best epoch whose checkpoint is still in storage."""
    score = plan.score
    metric = score.reported
    trial_id = trial_id_of_dir(posixpath.basename(result.path.rstrip("/")))
    run_folder = plan.trials_folder.join(plan.trial_run_name(trial_id))
    run_file = run_folder.join(File.RUN)
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
        candidates.append((-r[metric] if score.higher_is_better else r[metric], url, r))
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


def _close_trial_run(client: MlflowClient, row: TrialRow) -> None:
    """A trial stopped by ASHA never reaches train's own ending: close its run here."""
    if row.run_id is None:
        return
    tags = {Tag.TRIAL_ID: row.trial_id, Tag.TRIAL_STATUS: row.status}
    if row.best_checkpoint:
        tags |= dict.fromkeys(CHECKPOINT_TAGS, row.best_checkpoint)
    for key, value in tags.items():
        client.set_tag(row.run_id, key, value)
    if client.get_run(row.run_id).info.status == "RUNNING":
        client.set_terminated(row.run_id, status="FAILED" if row.status == "failed" else "FINISHED")


def _log_best_model(client: MlflowClient, plan: SweepPlan, best: TrialRow) -> str:
    """The best generator as a pyfunc model of the parent run (once per checkpoint)."""
    tags = client.get_run(plan.parent_run_id).data.tags
    if tags.get(Tag.MODEL_CHECKPOINT) == best.best_checkpoint and tags.get(Tag.MODEL_URI):
        return tags[Tag.MODEL_URI]
    loaded = load_generator_from_uri(best.best_checkpoint, storage_options=plan.folder.options)
    lineage = Lineage(
        source=best.best_checkpoint,
        source_run_id=best.run_id,
        dataset_fingerprint=tags.get(Tag.DATASET_FINGERPRINT),
        val_metrics=judged(best.best_metrics),
    )
    model_uri = log_generator_model(loaded, lineage, plan.parent_run_id)
    client.set_tag(plan.parent_run_id, Tag.MODEL_URI, model_uri)
    client.set_tag(plan.parent_run_id, Tag.MODEL_CHECKPOINT, best.best_checkpoint)
    return model_uri


def summarise(plan: SweepPlan, results: Any) -> TuneResult:  # results: ray.tune.ResultGrid
    """Close the trials' runs, pick the best trial, and record it all in the parent run."""
    client = MlflowClient(plan.common.tracking_uri)
    score = plan.score
    epochs = max_epochs(plan.space, plan.config)
    rows = sorted((trial_row(plan, r, epochs) for r in results), key=lambda row: row.trial_id)
    for row in rows:
        _close_trial_run(client, row)
    client.log_text(plan.parent_run_id, results_csv(rows, plan.space.names), File.RESULTS_TABLE)
    scored = [r for r in rows if r.best_checkpoint and score.reported in r.best_metrics]
    if not scored:
        client.set_terminated(plan.parent_run_id, status="FAILED")
        reasons = "; ".join(f"{r.trial_id}: {r.error or r.status}" for r in rows)
        raise UserError(f"sweep {plan.name}: no trial produced a checkpoint ({reasons})")
    sign = -1 if score.higher_is_better else 1
    best = min(scored, key=lambda r: sign * r.best_metrics[score.reported])

    best_options = plan.trial_config(best.config).flat()
    client.log_text(
        plan.parent_run_id, yaml.safe_dump(best_options, sort_keys=True), File.BEST_CONFIG
    )
    tags = dict.fromkeys(CHECKPOINT_TAGS, best.best_checkpoint)
    tags |= {Tag.BEST_TRIAL_ID: best.trial_id, Tag.BEST_RUN_ID: best.run_id or ""}
    tags |= {f"{Tag.BEST_VALUE_PREFIX}{k}": str(v) for k, v in best.config.items()}
    for key, value in tags.items():
        client.set_tag(plan.parent_run_id, key, value)
    log_metrics(client, plan.parent_run_id, best.best_metrics, step=best.best_epoch or 0)
    model_uri = _log_best_model(client, plan, best)
    client.set_terminated(plan.parent_run_id, status="FINISHED")
    out = TuneResult(
        sweep_name=plan.name,
        sweep_folder=plan.folder.url,
        parent_run_id=plan.parent_run_id,
        experiment_id=client.get_run(plan.parent_run_id).info.experiment_id,
        metric=score.reported,
        mode=score.mode,
        best_trial_id=best.trial_id,
        best_run_id=best.run_id or "",
        best_config=best.config,
        best_options=best_options,
        best_checkpoint=best.best_checkpoint,
        best_metrics=best.best_metrics,
        model_uri=model_uri,
        num_trials=len(rows),
    )
    plan.folder.join(File.SWEEP_RESULT).write_json(out.to_dict())
    return out
