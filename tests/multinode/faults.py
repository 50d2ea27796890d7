"""Fault injection for the node-loss tests: a Ray task or actor on a doomed node does its
work, then waits for the test to remove its node.

A driver joins the cluster with this module's `install` as the runtime env's
`worker_process_setup_hook` and a fault in `FAULT_ENV` (JSON):

    {"target": "prepare" | "translate", "node_id": ..., "marker": PATH}

In every worker process that starts for the job, `install` arranges to wrap the function
that target's Ray Data stage calls (prepare: `process_batch`, a task per block; translate:
`ReadTranslateWrite.__call__`, an actor call per batch) when the process imports its
module. Ray ships those by reference and each worker imports them, so the wrapped one
runs. The first call on the node `node_id` that finishes its work (its shard, or its
outputs and manifest part, are written) claims `marker`, writes its process id there and
waits: the test then removes that node, so the node is lost after the writes and before
Ray has the result, the window where a retry could duplicate or lose work. Every other
call runs as it is. Each call that finishes its work appends its node id to
`MARKER.calls` (`calls(marker)`), which shows where work ran.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

FAULT_ENV = "PIX2PIX_TEST_FAULT"
SETUP_HOOK = "tests.multinode.faults.install"


def runtime_env(fault: dict[str, Any]) -> dict[str, Any]:
    """The runtime env of a driver that injects `fault` (with what init_ray forwards)."""
    from pipelines.common.ray_runtime import forwarded_env
    from tests.multinode.conftest import ROOT

    env = {**forwarded_env(), FAULT_ENV: json.dumps(fault), "PYTHONPATH": str(ROOT)}
    return {"env_vars": env, "worker_process_setup_hook": SETUP_HOOK}


def install() -> None:
    fault = json.loads(os.environ.get(FAULT_ENV) or "null")
    if not fault:
        return
    wait_after = functools.partial(_then_wait, fault=fault)
    pause = functools.partial(_pause_epoch, fault=fault)
    targets = {  # target: (module, what in it to wrap, how)
        "prepare": ("pipelines.prepare.pairs", "process_batch", wait_after),
        "translate": ("pipelines.translate.actors", "ReadTranslateWrite.__call__", wait_after),
        "train": ("pipelines.train.worker", "maybe_wait_to_be_killed", lambda _: pause),
    }
    if fault["target"] not in targets:
        raise ValueError(f"unknown fault target {fault['target']!r}")
    module, path, wrap = targets[fault["target"]]
    _when_imported(module, _patch(path, wrap))


def _patch(path: str, wrap: Callable[[Any], Any]) -> Callable[[ModuleType], None]:
    """A patch that replaces the module's `path` (a name, or `Class.name`) with `wrap(` what
    it was `)`."""

    def patch(module: ModuleType) -> None:
        *owners, name = path.split(".")
        owner = functools.reduce(getattr, owners, module)
        setattr(owner, name, wrap(getattr(owner, name)))

    return patch


def _when_imported(name: str, patch: Callable[[ModuleType], None]) -> None:
    """`patch(module)` as soon as module `name` is imported in this process.

    Not an import here: the hook runs in every worker process of the job, and most of
    them (Ray Data's tasks, Tune's and Train's own actors) never import the module, whose
    torch and Ray Train would cost each several seconds of the 2 shared cores.
    """
    if name in sys.modules:
        patch(sys.modules[name])
    else:
        sys.meta_path.insert(0, _PatchOnImport(name, patch))


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands the module's own spec on, with a loader that patches
    the module after running it."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self.name, self.patch = name, patch

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            self.patch(module)

        spec.loader.exec_module = exec_module
        return spec


def _pause_epoch(hook, *, epoch: int, rank: int, fault: dict[str, Any]) -> None:
    """In place of the training worker's own fault hook: rank 0 of every training run
    pauses once, after the first step of `fault["epoch"]`, with the previous epoch's
    checkpoint registered; it writes MARKER/RUN_NAME.pid and waits, until its node is
    removed or the file MARKER/release appears."""
    import ray.train

    if epoch != fault["epoch"] or rank != 0:
        return
    folder = fault["marker"]
    name = ray.train.get_context().get_experiment_name()
    # Before the pid file, which tells the test to remove the node: epoch 1's checkpoint
    # is registered only once uploaded, and a node lost before that loses it.
    ray.train.get_all_reported_checkpoints()
    if not _claim(os.path.join(folder, f"{name}.pid")):
        return  # this run paused already (before its worker group was restarted)
    release = os.path.join(folder, "release")
    deadline = time.monotonic() + 600
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.1)


def _then_wait(fn, fault: dict[str, Any]):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        node = _node_id()
        with open(f"{fault['marker']}.calls", "a") as f:  # one short line: an atomic append
            f.write(node + "\n")
        if node == fault["node_id"] and _claim(fault["marker"]):
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:  # until the node and this process are gone
                time.sleep(0.1)
        return out

    return wrapped


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def calls(marker) -> list[str]:
    """The node ids of the wrapped calls that have finished their work, in order."""
    try:
        with open(f"{marker}.calls") as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def _claim(marker: str) -> bool:
    """True for the first caller only (an exclusive create), which writes its pid."""
    try:
        fd = os.open(f"{marker}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    tmp = f"{marker}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, marker)
    return True
