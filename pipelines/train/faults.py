"""Fault injection for the fault-tolerance tests: a worker process that waits to be killed.

A test passes `fault_hook={"pid_file": PATH, "epoch": 2, "rank": 1}` to `train()`. After
the first step of that epoch, that worker makes sure Ray Train has registered the previous
epoch's checkpoint, writes its process id to PATH and waits; the test kills the process
(SIGKILL, a real crash, not an exception). The hook fires once per PATH, so the worker
group Ray Train restarts after the crash trains on.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray.train


def maybe_wait_to_be_killed(hook: dict[str, Any] | None, *, epoch: int, rank: int) -> None:
    if not hook or hook.get("epoch") != epoch or hook.get("rank", 0) != rank:
        return
    path = hook["pid_file"]
    if os.path.exists(path):
        return
    # A report is registered by the controller asynchronously; without this, a crash
    # right after a report could resume from the checkpoint before it.
    ray.train.get_all_reported_checkpoints()
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, path)
    deadline = time.monotonic() + float(hook.get("wait_s", 600))
    while time.monotonic() < deadline:
        time.sleep(0.1)
