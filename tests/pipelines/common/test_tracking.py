"""Where the project's MLflow helpers put the store and the artifacts."""

import socket

import mlflow
import pytest

from pipelines.cli import main
from pipelines.common.errors import UserError
from pipelines.common.tracking import resolve_tracking_uri, setup_mlflow


def test_relative_sqlite_uri_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///sub/x.db") == f"sqlite:///{tmp_path / 'sub/x.db'}"


def test_sqlite_experiments_keep_artifacts_beside_the_database(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    experiment_id = setup_mlflow(uri, "placement")
    assert setup_mlflow(uri, "placement") == experiment_id  # idempotent

    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.log_text("hello", "note.txt")
        artifact_uri = mlflow.get_artifact_uri()
    assert artifact_uri.startswith((tmp_path / "store" / "mlartifacts").as_uri())
    assert list((tmp_path / "store" / "mlartifacts").rglob("note.txt"))
    assert not (elsewhere / "mlruns").exists()


def test_a_server_uri_where_nothing_listens_fails_at_once(tmp_path, capsys):
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        uri = f"http://127.0.0.1:{listening.getsockname()[1]}"
        assert resolve_tracking_uri(uri) == uri
    closed = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(UserError, match=f"no MLflow tracking server answers at {closed} "):
        resolve_tracking_uri(closed)
    checkpoint = str(tmp_path / "nothing-loaded-before-the-check")
    assert (
        main(["register", "--name", "x", "--checkpoint", checkpoint, "--tracking_uri", closed]) == 2
    )
    assert f"error: no MLflow tracking server answers at {closed}" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free again once closed
