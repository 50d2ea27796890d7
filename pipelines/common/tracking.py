"""MLflow helpers shared by the verbs: tracking URI, experiment, tags."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.parse
from functools import cache
from pathlib import Path

import mlflow

from pipelines.common.errors import UserError


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
