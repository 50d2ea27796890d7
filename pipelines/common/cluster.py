"""What every node of a Ray cluster must see: storage and the tracking server.

On one machine, a local path means the same folder to the driver and to every Ray worker.
On a cluster of several machines it does not: a checkpoint that a worker writes to
`./runs` stays on that worker's disk, where the worker that resumes the run on another
node cannot read it, and rank 0 logging to `sqlite:///mlflow.db` writes a database of its
own that the driver never sees. So with more than one node, `require_shared` refuses a
local path (or a SQLite/file MLflow store) before any work, unless the user declares it
shared: a folder that every node mounts (NFS, EFS, a Kubernetes volume), named in
`PIX2PIX_SHARED_PATHS` (folders, separated by `:`).

It then asks every node, with a tiny task pinned to it, to reach each object store URL
and the MLflow server the command uses, with that node's own environment plus what the
driver forwards (`pipelines.common.ray_runtime.forwarded_env`): a node that cannot is
named, with the URL and the cause, before any work starts there.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.client import ray as client
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipelines.common.errors import UserError
from pipelines.common.storage import Location, access_problem

SHARED_PATHS_ENV = "PIX2PIX_SHARED_PATHS"

# Options (by flag name) that name storage the Ray workers read or write, not only the
# driver: the data they read, the checkpoints they write, the archive they translate.
NODE_PATHS = (
    "SRC",
    "DST",
    "data",
    "storage_path",
    "resume_from",
    "fid_weights",
    "input",
    "output",
)
TRACKING = "tracking_uri"
PROBE_TIMEOUT_S = 180.0

_checked: set[tuple[str, str]] = set()  # (node id, URL) reached already by this process


@dataclass(frozen=True)
class Target:
    """A URL that workers use, named by the flag that gave it."""

    flag: str
    url: str
    location: Location | None = None  # storage; None for a tracking server
    local_path: str | None = None  # a path on the node's own filesystem

    def shared_root(self) -> str | None:
        """The declared-shared folder that holds this local path, if any."""
        for root in shared_paths():
            if self.local_path == root or self.local_path.startswith(root.rstrip("/") + "/"):
                return root
        return None


def shared_paths() -> list[str]:
    """The folders `PIX2PIX_SHARED_PATHS` declares mounted at the same place on every node."""
    value = os.environ.get(SHARED_PATHS_ENV, "")
    return [os.path.abspath(os.path.expanduser(p)) for p in value.split(os.pathsep) if p]


def require_shared(options: Mapping[str, Any], ray_address: str | None = None) -> None:
    """Refuse what the nodes of a multi-node cluster cannot all see; check they reach it.

    `options` are a verb's options by flag name (`cfg.flat()`, SRC and DST): those in
    NODE_PATHS name storage, `tracking_uri` the MLflow store (its default too), and
    `storage_options` how to reach them. On a local Ray (one node) this does nothing; with
    a cluster address and Ray not yet up, it joins the cluster first.
    """
    if not ray.is_initialized():
        if not (ray_address or os.environ.get("RAY_ADDRESS")):
            return  # a local Ray will start: one node, one filesystem
        # Imported here, as the tracking module below: the probe task imports this module
        # on every node, where torch and MLflow would cost seconds of CPU for nothing.
        from pipelines.common.ray_runtime import init_ray

        init_ray(ray_address, training=False)
    if ray.get_runtime_context().worker.mode != ray.SCRIPT_MODE:
        return  # a Tune trial: the sweep's driver checked already
    why = spread()
    if why is None:
        return
    targets = _targets(options)
    local = [t for t in targets if t.local_path is not None and t.shared_root() is None]
    if local:
        raise UserError(_refusal(local, why))
    _probe_every_node(targets)


def spread() -> str | None:
    """Why this driver's local files are not every worker's, or None (one node)."""
    if client.is_connected():
        return "this driver reaches the cluster through Ray Client (ray://), from another machine"
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) > 1:
        return f"this Ray cluster has {len(alive)} nodes"
    here = ray.get_runtime_context().get_node_id()
    mine = next((n for n in alive if n["NodeID"] == here), None)
    if mine is not None and not any(mine["Resources"].get(r, 0) for r in ("CPU", "GPU")):
        return (
            "this Ray cluster's head takes no work (no CPU or GPU), so the work runs on "
            "worker nodes that join it"
        )
    return None


def _targets(options: Mapping[str, Any]) -> list[Target]:
    storage_options = options.get("storage_options") or {}
    targets = []
    for name in NODE_PATHS:
        value = options.get(name)
        if not value:
            continue
        loc = value if isinstance(value, Location) else Location.parse(str(value), storage_options)
        flag = name if name.isupper() else f"--{name}"
        targets.append(Target(flag, loc.url, loc, loc.path if loc.is_local else None))
    if TRACKING in options:
        from pipelines.common.tracking import resolve_tracking_uri  # MLflow: see above

        uri = resolve_tracking_uri(options[TRACKING])
        targets.append(Target(f"--{TRACKING}", uri, local_path=_tracking_file(uri)))
    return targets


def _tracking_file(uri: str) -> str | None:
    """The local file or folder of a SQLite or file MLflow store; None for a server."""
    if uri.startswith("sqlite:///"):
        return os.path.abspath(uri.removeprefix("sqlite:///"))
    if uri.startswith("file:"):
        return os.path.abspath(uri.removeprefix("file://").removeprefix("file:"))
    if "://" not in uri:
        return os.path.abspath(uri)
    return None


def _refusal(local: list[Target], why: str) -> str:
    named = ", ".join(f"{t.flag} {t.url}" for t in local)
    tracking = any(t.location is None for t in local)
    server = " and an MLflow server (--tracking_uri http://HOST:5000)" if tracking else ""
    return (
        f"{named}: {'a local path' if len(local) == 1 else 'local paths'}, and {why}: what "
        "a worker writes there stays on its own node's disk, where the workers on other "
        "nodes and this driver cannot read it (and what this machine holds, they cannot "
        f"read). Use an object store (s3://BUCKET/PREFIX, gs://...){server}, or a "
        f"filesystem that every node mounts at the same path, declared in {SHARED_PATHS_ENV} "
        f"(e.g. {SHARED_PATHS_ENV}=/mnt/shared)"
    )


def _probe_every_node(targets: list[Target]) -> None:
    """Each alive node reaches every remote target (and has each declared-shared folder),
    or UserError naming the nodes, the URLs and the causes."""
    targets = [t for t in targets if t.local_path is None or t.shared_root()]
    if not targets:
        return
    pending = {}
    for node in ray.nodes():
        todo = [t for t in targets if (node["NodeID"], t.url) not in _checked]
        if not node["Alive"] or not todo:
            continue
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ref = _reach.options(scheduling_strategy=strategy).remote(todo)
        pending[ref] = (node, todo)
    ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=PROBE_TIMEOUT_S)
    # (what, why) -> the nodes where it failed: one cause is usually every node's
    problems: dict[tuple[str, str], list[str]] = {}
    for ref in late:
        node, _ = pending[ref]
        why = f"did not answer within {PROBE_TIMEOUT_S:.0f} s (a task pinned to it could not start)"
        problems.setdefault(("the check", why), []).append(_node_name(node))
        ray.cancel(ref, force=True)
    for ref in ready:
        node, todo = pending[ref]
        try:
            found = ray.get(ref)
        except ray.exceptions.RayError as err:  # the node died, or its worker could not start
            found = {t.url: f"the check could not run: {str(err).splitlines()[0]}" for t in todo}
        for t in todo:
            if t.url in found:
                problems.setdefault((f"{t.flag} {t.url}", found[t.url]), []).append(
                    _node_name(node)
                )
            else:
                _checked.add((node["NodeID"], t.url))
    if problems:
        lines = [
            f"{what} from {', '.join(nodes)}: {why}" for (what, why), nodes in problems.items()
        ]
        raise UserError(
            "every node of the cluster must reach the storage and the tracking server the "
            "job uses (each runs part of the work), and these cannot:\n"
            + "\n".join(f"  {line}" for line in lines)
        )


def _node_name(node: dict[str, Any]) -> str:
    custom = sorted(
        k
        for k in node["Resources"]
        if k not in ("CPU", "GPU", "memory", "object_store_memory")
        and not k.startswith(("node:", "accelerator_type:"))
    )
    extra = f", resources {', '.join(custom)}" if custom else ""
    return f"node {node['NodeManagerAddress']} (id {node['NodeID'][:12]}{extra})"


@ray.remote(num_cpus=0, max_retries=0)
def _reach(targets: list[Target]) -> dict[str, str]:
    """On one node: {url: what went wrong} for the targets it cannot reach."""
    problems = {}
    for t in targets:
        try:
            if t.local_path is not None:
                root = t.shared_root()
                if not os.path.isdir(root):
                    problems[t.url] = (
                        f"{root} is not there, though {SHARED_PATHS_ENV} declares it mounted "
                        "on every node"
                    )
            elif t.location is not None:
                t.location.fs.exists(t.location.path)
            else:
                _reach_tracking_server(t.url)
        except Exception as err:
            problems[t.url] = _cause(t, err)
    return problems


def _reach_tracking_server(uri: str) -> None:
    with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as response:
        if response.status != 200:
            raise OSError(f"HTTP {response.status} from {uri}/health")


def _cause(t: Target, err: Exception) -> str:
    if t.location is None:
        reason = getattr(err, "reason", None) or err
        return (
            f"cannot reach the MLflow tracking server ({reason}), which every node needs "
            "(rank 0 logs each epoch)"
        )
    cause = access_problem(err) or _unreachable(err) or f"{type(err).__name__}: {err}"
    endpoint = getattr(t.location.fs, "endpoint_url", None)  # s3fs: the one this node uses
    return cause + (f" (endpoint {endpoint} on that node)" if endpoint else "")


def _unreachable(err: Exception) -> str | None:
    """A connection to the store that failed (a proxy, a refused port, a timeout)."""
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError  # S3 only
    except ImportError:
        BotoConnectionError = OSError  # no S3 support installed
    if isinstance(err, (BotoConnectionError, ConnectionError, TimeoutError)):
        return f"cannot reach the object store: {type(err).__name__}: {err}"
    return None
