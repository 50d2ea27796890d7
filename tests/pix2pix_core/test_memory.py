"""retain_freed_memory: large freed blocks are reused instead of faulted in again."""

import os
import sys
import textwrap

import pytest

from pix2pix_core.memory import ONE_ARENA_ENV
from tests.cli_process import run_python

# glibc adapts its mmap threshold to freed blocks, but only up to 32 MiB; a training step at
# batch 4 and 256 x 256 frees activations larger than that every step. Count the minor page
# faults of allocating and freeing a 64 MiB tensor 20 times.
# argv: "retain" or "default", then "main" or "thread" (where the blocks are allocated).
_FAULTS = textwrap.dedent(
    """
    import resource, sys, threading, torch
    from pix2pix_core.memory import retain_freed_memory
    applied = retain_freed_memory() if sys.argv[1] == "retain" else None

    def count():
        for _ in range(3):  # warm-up, in either case
            torch.ones(16, 1024, 1024)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            torch.ones(16, 1024, 1024)
        print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    if sys.argv[2] == "thread":
        thread = threading.Thread(target=count)
        thread.start()
        thread.join()
    else:
        count()
    """
)
PAGES_PER_BLOCK = 64 * 1024 * 1024 // 4096


def _faults(mode: str, where: str = "main", env: dict | None = None) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k not in ONE_ARENA_ENV}
    done = run_python(_FAULTS, mode, where, env={**environment, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    applied, faults = done.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_large_freed_blocks_are_reused():
    applied, retained = _faults("retain")
    _, default = _faults("default")
    assert applied == "True"
    assert default >= 19 * PAGES_PER_BLOCK  # glibc's default: fresh pages every time
    # After the setting, the same memory again; the kernel may still reclaim a block now
    # and then (memory pressure, DAMON), so "most of the time" rather than "never".
    assert retained <= 8 * PAGES_PER_BLOCK


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_other_threads_reuse_freed_blocks_only_in_a_process_started_with_one_arena():
    # Ray runs the model on such threads: Ray Data's actor calls, Ray Train's training loop.
    _, own_arena = _faults("retain", "thread")
    _, one_arena = _faults("retain", "thread", env=ONE_ARENA_ENV)
    assert own_arena >= 19 * PAGES_PER_BLOCK  # its heaps unmapped whenever they fall empty
    # The main arena may still grow over the first few blocks (3-5 of them measured here)
    # and the kernel may reclaim some; but no longer all of them.
    assert one_arena <= 8 * PAGES_PER_BLOCK
