"""Starting a local Ray: what each kind of verb gets."""

from __future__ import annotations

import logging
import os

from pipelines.common.ray_runtime import quiet_ray_logs
from pix2pix_core.memory import ONE_ARENA_ENV
from tests.cli_process import run_python

# In a fresh process: a local Ray as translate and prepare start it; once Ray has started
# its workers ahead of time (ray::IDLE), an actor must land on one of them, not
# on a process of its own.
ACTOR_ON_A_PRESTARTED_WORKER = """
import os, subprocess, sys, time
import ray
from pipelines.common.ray_runtime import init_ray

def idle_workers():  # this Ray's: children of the raylet this process started
    ps = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in ps.stdout.splitlines()]
    ours = {int(pid) for pid, ppid, _ in rows if int(ppid) == os.getpid()}
    return {int(pid) for pid, ppid, args in rows if int(ppid) in ours and "ray::IDLE" in args}

init_ray(training=False)
deadline = time.monotonic() + 60
while not idle_workers() and time.monotonic() < deadline:
    time.sleep(0.5)
before = idle_workers()

@ray.remote(num_cpus=1)
class Pid:
    def get(self):
        return os.getpid()

pid = ray.get(Pid.remote().get.remote())
print("prestarted:", sorted(before), "actor:", pid)
sys.exit(0 if pid in before else 1)
"""


def _run_in_a_fresh_process(script: str, env: dict[str, str] | None = None) -> None:
    done = run_python(script, env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_a_local_ray_without_training_runs_actors_on_the_workers_it_started_ahead():
    _run_in_a_fresh_process(ACTOR_ON_A_PRESTARTED_WORKER)


# In a fresh process: Ray's workers reuse freed memory on every thread (its actors and
# training workers run the model on threads other than the main one), and the driver's
# own environment is left as it was.
ACTOR_THREADS_REUSE_FREED_MEMORY = """
import os, resource, sys, threading
import ray
from pipelines.common.ray_runtime import init_ray
from pix2pix_core.memory import ONE_ARENA_ENV

init_ray(training=False)

@ray.remote(num_cpus=1)
class Faults:
    def on_a_thread(self):
        import torch
        from pix2pix_core.memory import retain_freed_memory

        retain_freed_memory()
        counted = []

        def count():
            for _ in range(3):  # warm-up
                torch.ones(16, 1024, 1024)  # 64 MiB, freed at once
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(20):
                torch.ones(16, 1024, 1024)
            counted.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

        thread = threading.Thread(target=count)
        thread.start()
        thread.join()
        return counted[0] // (64 * 1024 * 1024 // 4096)

blocks = ray.get(Faults.remote().on_a_thread.remote())
driver = {k: os.environ[k] for k in ONE_ARENA_ENV if k in os.environ}
print("blocks faulted in:", blocks, "driver:", driver)
# Without it: every one of the 20 blocks. With it, most are reused; the kernel may still
# reclaim some (memory pressure, DAMON), and Ray's own threads share the arena.
sys.exit(0 if blocks <= 10 and not driver else 1)
"""


def test_a_local_rays_actors_reuse_freed_memory_on_every_thread():
    env = {k: v for k, v in os.environ.items() if k not in ONE_ARENA_ENV}
    _run_in_a_fresh_process(ACTOR_THREADS_REUSE_FREED_MEMORY, env)


def test_the_training_hook_quiets_rays_chatter_in_the_process_it_runs_in():
    names = [
        "ray.train.v2._internal.execution.controller.placement_group_cleaner",
        "ray.data._internal.progress",  # "Progress bars disabled. To enable, ..."
    ]
    epoch_lines = logging.getLogger("ray.data._internal.execution.streaming_executor")
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in [*loggers, epoch_lines]]
    try:
        quiet_ray_logs()
        assert not any(logger.isEnabledFor(logging.WARNING) for logger in loggers)
        # "Dataset ... execution finished" at each epoch's end: the epoch line says it
        assert not epoch_lines.isEnabledFor(logging.INFO)
        assert epoch_lines.isEnabledFor(logging.WARNING)
    finally:
        for logger, level in zip([*loggers, epoch_lines], saved, strict=True):
            logger.setLevel(level)
