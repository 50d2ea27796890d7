"""Register and promote against a real `mlflow server` on loopback (`--tracking_uri http://`).

The server keeps its store in SQLite and serves artifacts itself (the client uploads them
over HTTP). With boto3 installed, a second experiment keeps its artifacts on the SeaweedFS
object store, reached by the client through `MLFLOW_S3_ENDPOINT_URL`.
"""

import os

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from pipelines.cli import main
from pipelines.registry import register
from pipelines.registry.promotion import promote
from tests.pipelines.registry.registry_data import mlflow_server, registry_data


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_server")
    with mlflow_server(root) as uri:
        yield uri, root / "artifacts"


@pytest.fixture(scope="module")
def data(ray_cluster, tmp_path_factory, photo_pairs):
    return registry_data(tmp_path_factory, photo_pairs)


def _register_and_promote(server: str, name: str, data, experiment: str) -> None:
    mlflow.set_tracking_uri(server)
    first = register(name, str(data.untrained), experiment=experiment)
    assert promote(name, first.version, data.dst).promoted
    # The second through the command line, as a scheduled job would run it.
    flags = ["--tracking_uri", server, "--experiment", experiment]
    assert main(["register", "--checkpoint", str(data.trained), "--name", name, *flags]) == 0
    # Promote judges versions of the registry: it has no experiment of its own.
    args = ["promote", "--name", name, "--candidate", "2", "--data", data.dst.url]
    args += ["--tracking_uri", server]
    assert main(args) == 0

    mlflow.set_tracking_uri(server)
    assert str(MlflowClient().get_model_version_by_alias(name, "champion").version) == "2"
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    out = model.predict(np.zeros((1, 32, 32, 3), np.uint8))
    assert out.dtype == np.uint8 and out.shape == (1, 32, 32, 3)


def test_remote_server_with_artifacts_served_by_the_server(server, data):
    uri, artifacts = server
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("remote-proxied")  # artifacts: mlflow-artifacts:/ on the server
    _register_and_promote(uri, "remote-proxied", data, "remote-proxied")
    assert list(artifacts.rglob("generator.pt"))  # uploaded through the server


def test_remote_server_with_artifacts_on_object_storage(server, data, s3_store):
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == s3_store.endpoint_url
    uri, _ = server
    mlflow.set_tracking_uri(uri)
    bucket_prefix = s3_store.location("mlflow-artifacts").url
    mlflow.create_experiment("remote-s3", artifact_location=bucket_prefix)
    _register_and_promote(uri, "remote-s3", data, "remote-s3")
    assert s3_store.location("mlflow-artifacts").fs.find(bucket_prefix)  # artifacts landed
