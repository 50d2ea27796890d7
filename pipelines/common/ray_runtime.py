"""Starting or joining Ray, the same way for every verb."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import warnings
from collections.abc import Iterator

import ray

from pipelines.common.errors import UserError
from pix2pix_core.memory import ONE_ARENA_ENV


def init_ray(
    address: str | None = None, *, num_cpus: int | None = None, training: bool = True
) -> None:
    """Join `address` (or RAY_ADDRESS), or start a local Ray; a no-op if Ray is up.

    A local Ray serves the Ray dashboard on 127.0.0.1 (8265, or the next free port), and
    says where on stderr; it costs about 2 s more to start and 250 MB.

    A local Ray on a small machine is given at least 4 logical CPUs: Train workers,
    Data tasks and the Tune driver each hold a CPU slot while mostly waiting, and with
    only the physical count they can starve each other. The OS still shares the cores.

    A local Ray's processes get `ONE_ARENA_ENV`: its actors and training workers run the
    model on threads other than the main one, where without it every forward and step
    page-faults its activations in again (pix2pix_core.memory). Joining a cluster, the
    job's runtime env carries it, and what else the workers need from this driver's
    environment (`forwarded_env`), to every worker process on every node.

    A local Ray for `training` runs `quiet_ray_logs` in every worker. That setup hook
    gives the job a runtime env of its own, which the workers Ray starts ahead of time
    lack, so none of them can be used; verbs without Ray Train (prepare, translate) go
    without it and save those process starts.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    given = "--ray_address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address, given)
        env = forwarded_env()
        try:
            ray.init(
                address=address,
                logging_level=logging.WARNING,
                runtime_env={"env_vars": env} if env else None,
            )
        except ConnectionError as err:  # e.g. "auto" with no Ray running on this machine
            first = str(err).split(". ")[0]
            raise UserError(
                f"{given} {address}: {first}; start one (`ray start --head`), or "
                f"{_without(given)} to start a local Ray"
            ) from None
        return
    if num_cpus is None:
        num_cpus = max(4, os.cpu_count() or 1)
    hook = {"worker_process_setup_hook": "pipelines.common.ray_runtime.quiet_ray_logs"}
    with _environment(ONE_ARENA_ENV):  # inherited by the processes ray.init starts
        context = ray.init(
            # A Ray of its own. Without an address, ray.init joins the cluster that a
            # `ray start` on this machine left in /tmp/ray/ray_current_cluster, and then
            # refuses num_cpus.
            address="local",
            num_cpus=num_cpus,
            # None, not True: the dashboard starts (ray[default] is installed) on 8265, or
            # the next free port when another Ray has it, and one that cannot start is
            # logged instead of failing the verb.
            include_dashboard=None,
            logging_level=logging.WARNING,
            runtime_env=hook if training else None,
        )
    if context.dashboard_url:
        print(f"Ray dashboard: http://{context.dashboard_url}", file=sys.stderr, flush=True)


# What the workers of every node need from the driver's environment, where the driver has
# it: the object store's endpoint, region and keys (s3fs, pyarrow and boto3 read these), the
# MLflow server and its credentials, and the folders declared shared by every node
# (pipelines.common.cluster). Not forwarded: variables naming files (AWS_PROFILE,
# AWS_SHARED_CREDENTIALS_FILE), which a node may not have, and Ray's own token, which a
# node needs to join the cluster at all and its workers inherit from it.
FORWARDED_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_S3_ENDPOINT_URL",
    "PIX2PIX_SHARED_PATHS",
)
# Set by `ray job submit` in the job's driver: the job's own runtime env, JSON.
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def forwarded_env() -> dict[str, str]:
    """The env_vars of the runtime env this driver gives its job on a cluster.

    FORWARDED_ENV where set here, and ONE_ARENA_ENV (this environment's value, if it has
    one). Ray applies a runtime env's env_vars when it starts each worker process, so
    glibc sees MALLOC_ARENA_MAX from the start. In a job submitted with `ray job submit
    --runtime-env-json`, the variables that job's env_vars set already are left out: they
    reach every worker anyway, and Ray refuses a driver that sets one of them again.
    """
    env = {k: os.environ.get(k, v) for k, v in ONE_ARENA_ENV.items()}
    env.update({k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)})
    for key in _job_env_vars():
        env.pop(key, None)
    return env


def _job_env_vars() -> set[str]:
    text = os.environ.get(_JOB_CONFIG_ENV)
    if not text:
        return set()
    try:
        runtime_env = json.loads(text).get("runtime_env") or {}
    except (ValueError, AttributeError):
        return set()
    return set(runtime_env.get("env_vars") or {})


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """`variables` in os.environ, unless already set, for the duration of the block."""
    added = {k: v for k, v in variables.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _without(given: str) -> str:
    return "unset RAY_ADDRESS" if given == "RAY_ADDRESS" else "leave --ray_address out"


def _check_reachable(address: str, given: str) -> None:
    """Fail at once on a HOST:PORT where nothing listens (ray.init would retry for minutes)."""
    match = re.fullmatch(r"(?:ray://)?([^:/]+):(\d+)", address)
    if match is None:  # "auto", or a form Ray reads itself
        return
    try:
        socket.create_connection((match[1], int(match[2])), timeout=10).close()
    except OSError as err:
        raise UserError(
            f"{given} {address}: no Ray cluster answers there ({err}); give the head "
            f"node's HOST:PORT (6379 by default), or {_without(given)} to start a local Ray"
        ) from None


def cluster_cores() -> int:
    """The CPU cores of the Ray cluster, for sizing CPU work.

    The driver's node counts at most its own cores, since a local Ray is given more
    logical CPUs than it has (init_ray); every other node counts its CPU resource.
    """
    here = ray.get_runtime_context().get_node_id()
    cores = 0
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        cpus = int(node["Resources"].get("CPU", 0))
        cores += min(cpus, os.cpu_count() or 1) if node["NodeID"] == here else cpus
    return max(1, cores)


def quiet_ray_logs() -> None:
    """Silence Ray Train's per-process chatter that LoggingConfig does not reach.

    - Every `ray.train.report` logs the whole report at INFO, under a logger named by its
      file path (so "ray.train" levels miss it): one screenful per epoch and rank.
    - Ray Train's placement-group cleaner asks the State API, which a local Ray without a
      dashboard does not serve, and warns every second for the whole run.
    - Ray Train's dataset manager sets an option Ray Data has deprecated, and Ray Data
      warns about it on every run; nothing a user can change.
    - The training data's progress bars are off (the epoch line is the display), and Ray
      Data warns about that too, with advice to turn them back on; and it logs the end
      of each epoch's data pass ("Dataset ... execution finished") at INFO.

    Runs in every worker process of a local Ray (a setup hook) and in each training
    worker; a cluster serves the State API, so its cleaner stays quiet anyway.
    """
    # By name, without importing Ray Train: the hook runs in every worker, and importing
    # ray.train costs over a second of CPU in each (translate's actors, Data's tasks).
    context_file = os.path.join(
        os.path.dirname(ray.__file__), "train", "v2", "_internal", "execution", "context.py"
    )
    logging.getLogger(context_file).setLevel(logging.WARNING)
    logging.getLogger(
        "ray.train.v2._internal.execution.controller.placement_group_cleaner"
    ).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"`ExecutionOptions\.exclude_resources`")
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    logging.getLogger("ray.data._internal.execution.streaming_executor").setLevel(logging.WARNING)
