"""Starting or joining Ray, the same way for every verb."""

from __future__ import annotations

import logging
import os

import ray


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join `address` (or RAY_ADDRESS), or start a local Ray; a no-op if Ray is up.

    A local Ray on a small machine is given at least 4 logical CPUs: Train workers,
    Data tasks and the Tune driver each hold a CPU slot while mostly waiting, and with
    only the physical count they can starve each other. The OS still shares the cores.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    if num_cpus is None:
        num_cpus = max(4, os.cpu_count() or 1)
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
