"""Keep freed memory in the process, so each training step or forward reuses it.

A step allocates and frees the same large activation buffers every time. glibc's malloc
serves blocks above its mmap threshold with fresh pages and hands them back to the OS on
free, so every step page-faults and zeroes all of its activations again
(docs/design.md#glibc-mmap-thresholds). Raising the
mmap and trim thresholds keeps freed blocks for reuse; the process stays at its peak
footprint, which it reaches every step anyway. CUDA memory is PyTorch's own cache and not
affected.

The settings reach the main thread's memory only. glibc gives other threads arenas of
their own, made of heaps of at most 64 MiB that are unmapped whenever one falls empty,
whatever the thresholds; and Ray runs user code on such threads (Ray Data's actor calls,
Ray Train's training function). A process whose environment holds `ONE_ARENA_ENV` from
its start serves every thread from the main arena instead; `pipelines.common.ray_runtime` gives
it to the Ray processes it starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Activations of a batch-4 unet_256 step reach 32 MiB and more. Older glibc versions cap the
# threshold at 32 MiB (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit); those get the cap.
_MMAP_THRESHOLDS = (1024 * 1024 * 1024, 32 * 1024 * 1024)
_TRIM_THRESHOLD = 2**31 - 1

# glibc reads it when a process starts (the `glibc.malloc.arena_max` tunable).
ONE_ARENA_ENV = {"MALLOC_ARENA_MAX": "1"}


def retain_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; True if it took the settings.

    Idempotent. It reaches threads other than the main one only in a process started with
    `ONE_ARENA_ENV` (see above). A no-op (False) where malloc is not glibc's (macOS,
    Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not any(mallopt(_M_MMAP_THRESHOLD, threshold) for threshold in _MMAP_THRESHOLDS):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
