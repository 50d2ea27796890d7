"""Where the project's MLflow helpers put the store and the artifacts."""

import mlflow

from pipelines.tracking import resolve_tracking_uri, setup_mlflow


def test_relative_sqlite_uri_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///sub/x.db") == f"sqlite:///{tmp_path / 'sub/x.db'}"
    assert resolve_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"


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
