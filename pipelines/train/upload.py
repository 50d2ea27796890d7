"""Checkpoint uploads that yield the CPU to training.

Ray Train uploads a checkpoint reported with ASYNC from a thread of the worker process
while the next epoch trains. On a node whose cores the step keeps busy (any CPU node),
that copy's CPU work (request signing, checksums, the client's buffers: seconds for a
200 MB checkpoint) is taken from the step, at the step's own priority. Here the copy runs
in a child process at the lowest CPU priority, nice 19: below Ray's workers, which run at
nice 15, it gets the cycles the step leaves and, where both want a core, under a third of
it (Linux weighs nice 19 at 15 against nice 15's 36). Ray registers the checkpoint once
the copy has returned, so resume never picks a half-uploaded one; a failed copy fails the
report with the child's own error.

    python -m pipelines.train.upload LOCAL_FOLDER DEST_URL   (storage options on stdin)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from pipelines.common.storage import Location

LOWEST_PRIORITY = 19  # nice value: runs only when nothing else wants the core


def upload_at_low_priority(local_folder: str, dest: Location) -> None:
    """Copy every file of `local_folder` to the same path under `dest`, from a child process
    at the lowest CPU priority; raises RuntimeError with the child's error if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", __name__, local_folder, dest.url],
        # The options hold credentials: stdin, not the command line other users can read.
        input=json.dumps(dict(dest.options)).encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"uploading {local_folder} to {dest.url} failed: {' '.join(error)}")


def copy_folder(local_folder: str, dest: Location) -> None:
    """Every file under `local_folder` to the same relative path under `dest`."""
    for folder, _, names in os.walk(local_folder):
        for name in sorted(names):
            path = os.path.join(folder, name)
            target = dest.join(os.path.relpath(path, local_folder))
            if target.is_local:
                os.makedirs(os.path.dirname(target.path), exist_ok=True)
            target.fs.put_file(path, target.path)


def main(argv: list[str]) -> int:
    os.nice(LOWEST_PRIORITY)
    local_folder, url = argv
    options: dict[str, Any] = json.loads(sys.stdin.read() or "{}")
    copy_folder(local_folder, Location(url, options))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
