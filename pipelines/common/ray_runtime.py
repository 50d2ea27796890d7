"""Starting or joining Ray, the same way for every verb."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import warnings
from collections.abc import Iterator

import ray

from pipelines.common.errors import UserError
from pix2pix_core.memory import ONE_ARENA_ENV


def init_ray(
    address: str | None = None, *, num_cpus: int | None = None, training: bool = True
) -> None:
    """Join `address` (or RAY_ADDRESS), or start a local Ray; a no-op if Ray is up.

    A local Ray on a small machine is given at least 4 logical CPUs: Train workers,
    Data tasks and the Tune driver each hold a CPU slot while mostly waiting, and with
    only the physical count they can starve each other. The OS still shares the cores.

    A local Ray's processes get `ONE_ARENA_ENV`: its actors and training workers run the
    model on threads other than the main one, where without it every forward and step
    page-faults its activations in again (pix2pix_core.memory). A cluster's nodes get it
    from their own environment (infra/).

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
        try:
            ray.init(address=address, logging_level=logging.WARNING)
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
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env=hook if training else None,
        )


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
