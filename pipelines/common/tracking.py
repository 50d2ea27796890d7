"""MLflow for every verb: the tracking URI, the experiment, and one way to open or resume a run.

The tag and metric names are in `pipelines.common.names` (importable without MLflow).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.common.errors import UserError
from pipelines.common.names import Tag

# MLflow refuses longer parameter values.
_MAX_PARAM_CHARS = 6000


def resolve_tracking_uri(uri: str | None) -> str:
    """`--tracking_uri`, else MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db`.

    A relative SQLite path is made absolute: Ray workers run in other directories and
    would otherwise each open a database of their own.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + os.path.abspath(uri[len(prefix) :])
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    return uri


@cache
def _check_server(uri: str) -> None:
    """Fail at once when nothing listens at a server URI (MLflow retries for minutes)."""
    url = urllib.parse.urlsplit(uri)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=10).close()
    except OSError as err:
        raise UserError(
            f"no MLflow tracking server answers at {uri} ({err}); start it, or correct "
            "--tracking_uri / MLFLOW_TRACKING_URI"
        ) from None


def sqlite_artifact_location(uri: str) -> str | None:
    """`mlartifacts/` beside a SQLite database, for experiments this project creates.

    MLflow would otherwise put a SQLite store's artifacts in `./mlruns` of whatever the
    working directory is, so a database moved or read from elsewhere loses its models.
    None for other stores: a server decides where its artifacts go.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return (Path(uri[len(prefix) :]).parent / "mlartifacts").as_uri()


def setup_mlflow(tracking_uri: str | None, experiment: str) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id.

    Call this in the driver before any worker starts: SQLite stores race when several
    processes create the schema or the experiment at once.
    """
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    existing = mlflow.get_experiment_by_name(experiment)
    if existing is not None:
        return existing.experiment_id
    try:
        return mlflow.create_experiment(experiment, artifact_location=sqlite_artifact_location(uri))
    except mlflow.exceptions.MlflowException:
        # Created by a concurrent process between the lookup and the create.
        return mlflow.get_experiment_by_name(experiment).experiment_id


@cache
def git_commit() -> str | None:
    """The commit of the code that runs, for tags; None outside a git checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def encode_param(value: Any) -> str:
    """A parameter value as MLflow stores it: JSON for mappings and lists, else str()."""
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return text[:_MAX_PARAM_CHARS]


@dataclass(frozen=True)
class TrackedRun:
    experiment_id: str
    run_id: str
    resumed: bool  # an earlier attempt's run, continued


def open_run(
    tracking_uri: str | None,
    experiment: str,
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    resume_run_id: str | None = None,
    parent_run_id: str | None = None,
) -> TrackedRun:
    """The run `resume_run_id` marked running again if this store has it, else a new run
    named `name` with `params` and `tags` (and the git commit), a child of `parent_run_id`.

    Every verb that records a run opens it here (train, each sweep trial and its parent,
    retrain), so that a rerun after a crash continues the run it started.
    """
    experiment_id = setup_mlflow(tracking_uri, experiment)
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    if resume_run_id:
        try:
            client.update_run(resume_run_id, status="RUNNING")
            return TrackedRun(experiment_id, resume_run_id, resumed=True)
        except MlflowException:
            pass  # another tracking store than last time: open the run here
    all_tags = {Tag.GIT_COMMIT: git_commit() or "unknown", **(tags or {})}
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = client.create_run(experiment_id, run_name=name, tags=all_tags)
    if params:
        client.log_batch(
            run.info.run_id,
            params=[Param(k, encode_param(v)) for k, v in sorted(params.items())],
        )
    return TrackedRun(experiment_id, run.info.run_id, resumed=False)


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, Any], step: int = 0
) -> None:
    """The finite numbers among `metrics`, at `step`, in one request."""
    now = int(time.time() * 1000)
    batch = [
        Metric(key, float(value), now, step)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    ]
    if batch:
        client.log_batch(run_id, metrics=batch)
