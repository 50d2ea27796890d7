"""`pix2pix ...` in a fresh process, as a user's shell runs it (its own environment, no
Ray or MLflow state shared with the test session)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipelines.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def run_python(
    script: str,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """A Python snippet in a fresh process (nothing of the test session's state in it);
    `args` are its sys.argv[1:]."""
    command = [sys.executable, "-c", script, *args]
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
