"""A Ray cluster of several nodes on this machine, the storage and tracking server every
node sees, and drivers that join it from processes of their own.

- `cluster` (package): `ray.cluster_utils.Cluster`, a head that takes no work (0 CPUs) and
  worker nodes `node_a`, `node_b`, `node_c` of 3 logical CPUs each, each a raylet with its
  own object store and a custom resource of its name (`{"node_b": 1}`), so that a test can
  pin work to it. `cluster.remove(name)` kills a node's processes (a crash, not a drain);
  each test starts with all three (`restore`). The nodes start without the driver's
  variables (AWS_*, MLFLOW_*, MALLOC_ARENA_MAX), as nodes of a real cluster have none of
  the laptop's: what their workers need must come through the job's runtime env.
- `mlflow_server` (package): `mlflow server` on loopback, on SQLite, serving artifacts.
  Not MLflow on a SQLite file: a file is one node's, and with more than one node the verbs
  refuse it (pipelines.common.cluster); workers on several nodes (rank 0 of each trial,
  the sweep's driver) write at once, through the one server, as on a real cluster.
- storage: the session's SeaweedFS (`s3_store`); the workers reach it with the AWS
  variables the drivers forward.
- `run_driver(...)`: a Python snippet in a fresh process that joins the cluster, as
  `pix2pix ... --ray_address` does.

Why drivers run in processes of their own: a process joins one Ray at a time, and the
session-wide `ray_cluster` fixture (tests/conftest.py) may hold a local Ray in the pytest
process whenever these tests run. `Cluster(connect=False)` starts and kills raylets
without joining, so the cluster lives here and no driver does; nothing of the session's
Ray is shut down or replaced, and test order does not matter.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.common.ray_runtime import FORWARDED_ENV
from pix2pix_core.memory import ONE_ARENA_ENV
from tests.pipelines.registry.registry_data import mlflow_server as start_mlflow_server

ROOT = Path(__file__).resolve().parents[2]
WORKER_NODES = ("node_a", "node_b", "node_c")
NODE_CPUS = 3
# Not in a node's own environment: what a laptop's shell has and a cluster node does not.
DRIVER_ONLY_ENV = (*FORWARDED_ENV, *ONE_ARENA_ENV, "PIX2PIX_TEST_FAULT")
DRIVER_TIMEOUT_S = 420
# How soon the head declares a killed node dead: a check every second, 5 failed in a row
# (Ray's default is a check every 3 s, which leaves every node-loss test waiting about
# 15 s). A killed raylet refuses each check at once, so it is dead in about 5 s; a live
# one slowed by the 2 busy cores would have to miss 5 checks of 10 s each, as by default.
NODE_LOSS_DETECTION = {
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 5,
    "health_check_timeout_ms": 10000,
}


def node_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """A cluster node's own environment: `base` (os.environ) without DRIVER_ONLY_ENV, with
    token auth (the processes a node starts inherit it); `extra` on top."""
    env = dict(os.environ if base is None else base)
    for key in DRIVER_ONLY_ENV:
        env.pop(key, None)
    return {**env, "RAY_AUTH_MODE": "token", **extra}


@contextlib.contextmanager
def node_environment(**extra: str) -> Iterator[None]:
    """os.environ as `node_env()` while raylets start in this process."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(node_env(saved, **extra))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class MultiNode:
    """The cluster, and which of its raylets is which."""

    def __init__(self) -> None:
        from ray._private.authentication import authentication_token_setup as auth
        from ray.cluster_utils import Cluster

        with node_environment():
            # Token authentication, as Ray 2.60 turns it on for a local `ray.init()`: in
            # this process too (which waits for each node through the GCS), with the token
            # every node and driver reads from ~/.ray/auth_token (made if missing, as
            # `ray.init()` makes it).
            auth._enable_token_auth()
            auth.ensure_token_if_auth_enabled(create_token_if_missing=True)
            self.cluster = Cluster(
                initialize_head=True,
                connect=False,
                head_node_args={
                    "num_cpus": 0,
                    "resources": {"head": 1},
                    "include_dashboard": False,
                    "object_store_memory": 200 * 1024**2,
                    "_system_config": NODE_LOSS_DETECTION,
                },
            )
        self.nodes: dict = {}
        self.restore()

    @property
    def address(self) -> str:
        return self.cluster.address

    def add(self, name: str, *, wait: bool = True, **env: str):
        with node_environment(**env):
            node = self.cluster.add_node(
                wait=wait,
                num_cpus=NODE_CPUS,
                resources={name: 1},
                object_store_memory=150 * 1024**2,
            )
        self.nodes[name] = node
        return node

    def remove(self, name: str) -> None:
        """Kill a node's processes at once (no graceful drain), as a lost machine."""
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    def restore(self) -> None:
        """All of WORKER_NODES up, and only them."""
        for name in [n for n in self.nodes if n not in WORKER_NODES]:
            self.remove(name)
        for name in WORKER_NODES:
            if name not in self.nodes:
                self.add(name, wait=False)  # the raylets start side by side
        self.cluster.wait_for_nodes(timeout=120)

    def node_id(self, name: str) -> str:
        return self.nodes[name].node_id

    def name_of_pid(self, pid: int) -> str:
        """The node whose raylet started process `pid` (a Ray worker)."""
        raylets = {
            node.all_processes["raylet"][0].process.pid: name for name, node in self.nodes.items()
        }
        while pid > 1:
            if pid in raylets:
                return raylets[pid]
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        raise LookupError(f"process {pid} is not a worker of any node of this cluster")

    def processes(self, title: str) -> dict[int, str]:
        """{pid: node name} of this cluster's worker processes whose title has `title`
        (Ray names a worker process after its actor: `ray::RayTrainWorker...`)."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().decode(errors="replace")
                if cmdline.startswith("ray::") and title in cmdline:
                    found[int(entry)] = self.name_of_pid(int(entry))
            except (OSError, LookupError):  # gone meanwhile, or another Ray's
                continue
        return found

    def driver_env(self, tracking_uri: str, **extra: str) -> dict[str, str]:
        """A user's shell on the head machine, pointed at the cluster and the servers."""
        return {
            **os.environ,
            "RAY_ADDRESS": self.address,
            "RAY_AUTH_MODE": "token",
            # Every worker's line reaches the output: deduplicated, a second trial's
            # "resuming trial-..." within 5 s of the first would show as "[repeated 2x]".
            "RAY_DEDUP_LOGS": "0",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PYTHONPATH": str(ROOT),
            **extra,
        }

    def shutdown(self) -> None:
        import ray._common.utils

        # Not Cluster.shutdown(): that also resets this process's Ray client state, which
        # belongs to the session's local Ray if one is up.
        for name in list(self.nodes):
            self.remove(name)
        self.cluster.remove_node(self.cluster.head_node, allow_graceful=True)
        ray._common.utils.reset_ray_address()


@pytest.fixture(scope="package")
def multinode() -> Iterator[MultiNode]:
    nodes = MultiNode()
    try:
        yield nodes
    finally:
        nodes.shutdown()


@pytest.fixture
def cluster(multinode) -> MultiNode:
    """The cluster with all its worker nodes (a node an earlier test removed is back)."""
    multinode.restore()
    return multinode


@pytest.fixture(scope="package")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    with start_mlflow_server(tmp_path_factory.mktemp("multinode_mlflow")) as uri:
        yield uri


RESULT_PREFIX = "RESULT_JSON "


def run_driver(
    script: str, env: dict[str, str], *, timeout: float = DRIVER_TIMEOUT_S
) -> subprocess.Popen:
    """Start `script` (Python; it prints its result with `emit`) in a fresh process."""
    prelude = textwrap.dedent(
        f"""
        import json as _json

        def emit(value):
            print({RESULT_PREFIX!r} + _json.dumps(value), flush=True)
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, *, timeout: float = DRIVER_TIMEOUT_S, ok: bool = True):
    """Wait for a driver; its result (what it emitted) and everything it printed."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(
            f"driver still running after {timeout:.0f} s:\n{out[-6000:]}"
        ) from None
    keep_log(out)
    results = [
        line[len(RESULT_PREFIX) :] for line in out.splitlines() if line.startswith(RESULT_PREFIX)
    ]
    if ok:
        assert proc.returncode == 0 and results, (
            f"driver failed ({proc.returncode}):\n{out[-6000:]}"
        )
    return (json.loads(results[-1]) if results else None), out


def keep_log(out: str) -> None:
    """A driver's output, appended to $MULTINODE_LOG when set (to read after a run)."""
    if os.environ.get("MULTINODE_LOG"):
        with open(os.environ["MULTINODE_LOG"], "a") as f:
            f.write(out)


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = DRIVER_TIMEOUT_S) -> str:
    """The content of `path` once a worker has written it; fail if the driver ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, _ = proc.communicate()
            raise AssertionError(f"driver ended before {path.name} appeared:\n{out[-6000:]}")
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout:.0f} s"
        time.sleep(0.1)
    return path.read_text()


# -- data every test shares ------------------------------------------------------------

PAIRS, VAL = 20, 4  # pairs in the source, of which val
LOAD_SIZE = 36  # prepared size: random 32 px crops (tests/tiny.py)


@pytest.fixture(scope="package")
def source(s3_store):
    """Aligned A|B pairs (48 px) in the object store: 16 train, 4 val."""
    from pipelines.demo.sample_data import make_pairs, write_dataset

    pairs = make_pairs(PAIRS, size=48, seed=0)
    root = s3_store.location("multinode/source")
    write_dataset({"train": pairs[: PAIRS - VAL], "val": pairs[PAIRS - VAL :]}, root)
    return root


PREPARE = """
from pipelines.prepare import PrepareOptions, prepare
summary = prepare({src!r}, {dst!r}, PrepareOptions(load_size={load_size}))
emit({{"inputs": summary.inputs, "ready": summary.ready, "fingerprint": summary.fingerprint}})
"""


@pytest.fixture(scope="package")
def prepared(multinode, source, s3_store, mlflow_server):
    """`source` prepared on the cluster (every worker node runs tasks), in the object store."""
    multinode.restore()
    dst = s3_store.location("multinode/prepared")
    script = PREPARE.format(src=source.url, dst=dst.url, load_size=LOAD_SIZE)
    summary, _ = finish(run_driver(script, multinode.driver_env(mlflow_server)))
    assert summary["ready"] == summary["inputs"] == PAIRS
    return dst
