"""Test data shared by the evaluate, model-loading and registry tests, built once a session.

One prepared dataset (the sample photo pairs at 64 px) and tiny generators (U-Net depth 5,
ngf 8, crop 32, so evaluation resizes the 64 px pairs to 32): one trained for a few dozen
steps of the real training step, and two untrained ones with other seeds. Trained beats
untrained by far on L1, PSNR and SSIM, which is what the promotion tests rely on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipelines.common.storage import Location
from pipelines.demo.sample_data import write_dataset
from pipelines.prepare import PrepareOptions, prepare
from pix2pix_core import (
    DiscriminatorConfig,
    Pix2Pix,
    resize,
    save_checkpoint,
    save_generator,
    to_tensor,
)
from tests.tiny import CROP, GENERATOR

LOAD = 64  # prepared image size
# CROP: the models' size
DISCRIMINATOR = DiscriminatorConfig(ndf=8, n_layers=1, input_nc=6)
TRAIN_STEPS = 40


@dataclass(frozen=True)
class RegistryData:
    dst: Location  # the prepared dataset: train 16, val 4, test 4 pairs
    trained: Path  # save_generator bytes of the trained generator
    untrained: Path  # another, untrained
    untrained_other: Path  # a third, untrained, another seed
    training_checkpoint: Path  # save_checkpoint bytes of the trained Pix2Pix
    model: Pix2Pix  # the trained one, in memory


_CACHE: dict[int, RegistryData] = {}


def _train(pairs) -> Pix2Pix:
    a = resize(to_tensor(np.stack([p.a for p in pairs])), CROP)
    b = resize(to_tensor(np.stack([p.b for p in pairs])), CROP)
    model = Pix2Pix(GENERATOR, DISCRIMINATOR, seed=0, lr=2e-3)
    rng = torch.Generator().manual_seed(0)
    for _ in range(TRAIN_STEPS):
        i = torch.randint(0, len(pairs), (4,), generator=rng)
        model.train_step(a[i], b[i])
    return model


def registry_data(tmp_path_factory, photo_pairs) -> RegistryData:
    """Build (once per session) the dataset and the models. Needs a running Ray."""
    key = id(tmp_path_factory)
    if key in _CACHE:
        return _CACHE[key]
    root = tmp_path_factory.mktemp("registry_data")
    src = Location.parse(str(root / "src"))
    splits = {"train": photo_pairs[:16], "val": photo_pairs[16:20], "test": photo_pairs[20:24]}
    write_dataset(splits, src, "aligned", fmt="png")
    dst = Location.parse(str(root / "prepared"))
    prepare(src, dst, PrepareOptions(load_size=LOAD, val_fraction=0.0))

    extra = {"crop_size": CROP, "eval_mode": False}
    model = _train(splits["train"])
    files = {
        "trained": save_generator(model.generator_module, GENERATOR, extra),
        "untrained": save_generator(
            Pix2Pix(GENERATOR, DISCRIMINATOR, seed=1).generator_module, GENERATOR, extra
        ),
        "untrained_other": save_generator(
            Pix2Pix(GENERATOR, DISCRIMINATOR, seed=2).generator_module, GENERATOR, extra
        ),
        "training_checkpoint": save_checkpoint(model, extra),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = root / "models" / f"{name}.pt"
        paths[name].parent.mkdir(exist_ok=True)
        paths[name].write_bytes(data)
    _CACHE[key] = RegistryData(dst=dst, model=model, **paths)
    return _CACHE[key]


# -- servers started by the tests (`mlflow server`, `mlflow models serve`) ----------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def path_with_venv() -> str:
    """PATH as in an activated environment: MLflow's servers exec `uvicorn` from PATH."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Poll `url` until it answers; fail with the server's log if it exits or never does."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server started with `start_new_session=True`, and what it started."""
    for signal, wait in ((15, 20), (9, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal)  # the group: a child may outlive its parent
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """`mlflow server` on loopback, its store a SQLite file in `root` and its artifacts in
    `root/artifacts` (served by the server); yields its URI, stops it afterwards."""
    port = free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 (open while the server runs)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        # The job executor serves MLflow's GenAI features; off, the server is one process.
        env={
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "PATH": path_with_venv(),  # the server execs uvicorn from PATH
        },
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{uri}/health", proc, root / "server.log")
        yield uri
    finally:
        stop_server(proc)
        log.close()
