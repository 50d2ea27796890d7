"""`pix2pix retrain` submitted as a Ray job, as docs/cluster.md documents it.

A head started with `ray start --head` (no CPUs for work, the dashboard and its job server
on loopback) and a worker node joined with `ray start --address`, both children of this
test, both without the driver's variables; then, from a shell like a user's,

    ray job submit --address http://127.0.0.1:PORT --working-dir . \
        --runtime-env-json '{"env_vars": {...}}' -- pix2pix retrain --config s3://.../retrain.yaml

run in the repository root: it uploads the tree (what .gitignore lists stays behind),
follows the job's logs and exits with the job's outcome. The config is in the object
store (`--config` takes any URL), so that nothing is written into the working tree.

Each node gets a `--temp-dir` of its own: `ray start` writes the cluster's address to
TEMP_DIR/ray_current_cluster, and in the default /tmp/ray a later `ray.init()` on this
machine would join this cluster. The nodes are stopped by signalling these processes,
never with `ray stop`, which stops every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from pipelines.common import checkpoints
from pipelines.common.storage import Location
from tests.multinode.conftest import DRIVER_TIMEOUT_S, ROOT, keep_log, node_env
from tests.pipelines.registry.registry_data import free_port, path_with_venv
from tests.pipelines.retrain.retrain_data import STEPS, TINY, step_record, write_raw_pairs

pytestmark = [pytest.mark.slow, pytest.mark.s3]

START_TIMEOUT_S = 120


@dataclass
class RayStartCluster:
    dashboard: str  # http://127.0.0.1:PORT, what `ray job submit --address` takes
    temp_dir: Path  # the nodes' --temp-dir folders: head/ and worker/
    token: str
    worker_node_id: str = ""

    def get(self, path: str) -> Any:
        """GET from the dashboard's REST API, with the token it asks for."""
        request = urllib.request.Request(
            self.dashboard + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)


def _shell_env() -> dict[str, str]:
    """A user's shell with the project's environment activated and token auth on."""
    env = {**os.environ, "PATH": path_with_venv(), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    return env


def _node_env() -> dict[str, str]:
    """A cluster node's own environment: none of the laptop's AWS_*/MLFLOW_* variables.
    On SIGTERM `ray start --block` first drains its node, for up to 30 s; this cluster is
    thrown away, nothing on it needs draining."""
    return node_env(_shell_env(), RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["ray", "start", "--block", *args],
            env=_node_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, with all it starts
        )


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to `ray start` (it stops its node's processes), then SIGKILL to the rest of
    its group (workers that outlived it)."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _listening(port: int) -> bool:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    return True


def _wait(what: str, ready: Callable[[], Any], procs: dict[Path, subprocess.Popen]) -> Any:
    """ready()'s first true value; fail with the logs if a node exits or it takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        for log, proc in procs.items():
            assert proc.poll() is None, f"`ray start` exited:\n{log.read_text()[-3000:]}"
        with contextlib.suppress(OSError, ValueError):
            if value := ready():
                return value
        tails = "\n".join(log.read_text()[-1500:] for log in procs)
        assert time.monotonic() < deadline, f"{what} not up in {START_TIMEOUT_S} s:\n{tails}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def ray_start_cluster(tmp_path_factory) -> Iterator[RayStartCluster]:
    # A short path, since Ray's Unix sockets live under it (at most 107 characters). A
    # folder for each node, as on machines of their own: a node deletes its copy of a
    # job's working dir when its last worker of the job exits, and in a shared folder that
    # copy is also the job driver's current directory on the head.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-job-", dir="/tmp"))
    logs = tmp_path_factory.mktemp("ray_start")
    # docs/cluster.md's one-time step; it keeps ~/.ray/auth_token if there is one.
    token = subprocess.run(
        ["ray", "get-auth-token", "--generate"],
        env=_shell_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    gcs_port, dashboard_port = free_port(), free_port()
    # The ports a node takes by a fixed default are given, so that two nodes on one
    # machine (and other tests' Rays) do not meet on the dashboard agent's 52365 or Ray
    # Client's 10001.
    common = ["--node-ip-address=127.0.0.1", f"--object-store-memory={200 * 1024**2}"]
    procs: dict[Path, subprocess.Popen] = {}
    cluster = RayStartCluster(f"http://127.0.0.1:{dashboard_port}", temp_dir, token)
    try:
        procs[logs / "head.log"] = _start(
            [
                "--head",
                f"--port={gcs_port}",
                f"--dashboard-port={dashboard_port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--ray-client-server-port={free_port()}",
                "--num-cpus=0",
                f"--temp-dir={temp_dir / 'head'}",
                *common,
            ],
            logs / "head.log",
        )
        _wait("the head's GCS", lambda: _listening(gcs_port), procs)
        procs[logs / "worker.log"] = _start(
            [
                f"--address=127.0.0.1:{gcs_port}",
                f"--dashboard-agent-listen-port={free_port()}",
                "--num-cpus=3",  # logical, above the 2 cores, as the other multinode tests
                f"--temp-dir={temp_dir / 'worker'}",
                *common,
            ],
            logs / "worker.log",
        )

        def worker_node() -> str | None:
            nodes = cluster.get("/api/v0/nodes")["data"]["result"]["result"]
            alive = [n for n in nodes if n["state"] == "ALIVE"]
            workers = [n["node_id"] for n in alive if not n["is_head_node"]]
            return workers[0] if len(alive) == 2 and workers else None

        cluster.worker_node_id = _wait("the worker node", worker_node, procs)
        yield cluster
    finally:
        for proc in reversed(procs.values()):  # the worker first, while the head answers
            _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def raw_pairs(s3_store) -> Location:
    return write_raw_pairs(s3_store.location("job-submit/raw"))


def _failed_steps(run_dir: Location) -> str:
    """The tracebacks a failed retrain recorded (the job's log has only their last line)."""
    errors = []
    for step in STEPS:
        if (record := step_record(run_dir, step)) and (error := record["error"]):
            errors.append(f"\n[{step}] {error.get('traceback', error)}")
    return "".join(errors)


def test_ray_job_submit_runs_retrain_on_a_ray_start_cluster(
    ray_start_cluster, s3_store, mlflow_server, raw_pairs
):
    cluster = ray_start_cluster
    storage = s3_store.location("job-submit/runs")
    run_dir = storage.join("nightly")
    name = f"facades-{uuid.uuid4().hex[:8]}"
    # The tiny retrain of tests/pipelines/retrain. No tracking_uri: the job gets the
    # server from MLFLOW_TRACKING_URI in its env_vars, as on a cluster.
    config = s3_store.location("job-submit/retrain.yaml")
    values = {
        "source": raw_pairs.url,
        "storage_path": storage.url,
        "run_name": "nightly",
        "experiment": "job-submit",
        "name": name,
        "metric": "l1",
        **TINY,
    }
    config.write_bytes(yaml.safe_dump(values).encode())
    # What docs/cluster.md says a job needs for a non-AWS object store and MLflow.
    env_vars = {
        key: os.environ[key]
        for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    env_vars["MLFLOW_TRACKING_URI"] = mlflow_server
    job_id = f"retrain-{uuid.uuid4().hex[:8]}"

    # 1. Submitted from the repository root; the command follows the job's logs to its end.
    command = ["ray", "job", "submit", "--address", cluster.dashboard, "--submission-id", job_id]
    command += ["--working-dir", ".", "--runtime-env-json", json.dumps({"env_vars": env_vars})]
    command += ["--", "pix2pix", "retrain", "--config", config.url]
    submitted = subprocess.run(
        command,
        cwd=ROOT,
        env=_shell_env(),
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
    )
    out = submitted.stdout + submitted.stderr
    keep_log(out)
    assert submitted.returncode == 0, out[-6000:] + _failed_steps(run_dir)
    assert f"Job '{job_id}' succeeded" in out
    # the job's own output, followed: the retrain's summary line
    assert f"retrain nightly: ran {', '.join(STEPS)}" in out, out[-6000:]
    assert f"champion {name} v1; run folder {run_dir.url}" in out

    # 2. The job server's record; the job's driver joined this cluster (the job server
    # sets RAY_ADDRESS; not a local Ray of its own): its training worker ran on the
    # worker node, in this cluster's record of the job.
    job = cluster.get(f"/api/jobs/{job_id}")
    assert job["status"] == "SUCCEEDED" and job["driver_exit_code"] == 0
    actors = cluster.get(
        "/api/v0/actors?detail=1&limit=1000"
        "&filter_keys=class_name&filter_predicates=%3D&filter_values=RayTrainWorker"
    )["data"]["result"]["result"]
    ours = [a for a in actors if a["job_id"] == job["driver_info"]["id"]]
    assert ours and {a["node_id"] for a in ours} == {cluster.worker_node_id}, actors

    # 3. The working dir the job ran in, on the head: the tree, not what .gitignore lists.
    unpacked = cluster.temp_dir / "head" / "session_latest" / "runtime_resources"
    packages = [p for p in unpacked.glob("working_dir_files/*") if p.is_dir()]
    assert len(packages) == 1, [(p, sorted(x.name for x in p.iterdir())) for p in packages]
    assert (packages[0] / "pipelines" / "cli.py").is_file()
    assert not (packages[0] / ".venv").exists()

    # 4. Its outputs in the store: every step done at the first attempt, the best checkpoint.
    for step in STEPS:
        record = step_record(run_dir, step)
        assert (record["status"], record["attempt"]) == ("done", 1), (step, record)
    train = step_record(run_dir, "train")["result"]
    assert train["epochs"] == 2
    best = train["outputs"]["checkpoint"]  # the model registered, in the store
    assert best.startswith(run_dir.url + "/")
    assert checkpoints.read_meta(best, storage.options)["epoch"] in (1, 2)
    (invocation,) = run_dir.join("retrain.json").read_json()["invocations"]
    assert invocation["status"] == "done" and invocation["attempts"] == 1

    # 5. In MLflow, through the server the job was given: the runs and the new champion.
    client = MlflowClient(mlflow_server)
    (version,) = client.search_model_versions(f"name = '{name}'")
    assert str(version.version) == "1"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert version.tags["retrain.run_folder"] == run_dir.url
    parent = client.get_run(invocation["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["pix2pix.run_folder"] == run_dir.url
    evaluated = step_record(run_dir, "evaluate")["result"]
    assert parent.data.metrics["test_l1"] == pytest.approx(evaluated["metrics"]["l1"])
    assert client.get_run(train["mlflow_run_id"]).info.status == "FINISHED"
