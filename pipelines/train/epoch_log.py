"""What rank 0 tells MLflow and the user after each epoch.

The driver created the MLflow run and logged the parameters and tags (pipelines.train.driver);
rank 0 adds the epoch's metrics and a sample grid (input | output | target) to it, and
prints one progress line. No other rank talks to MLflow.

An epoch reaches MLflow once Ray Train has registered its report and checkpoint, and no
sooner: an attempt lost before that (a worker's or the controller's node gone) leaves no
epoch that the next attempt trains and logs again. The checkpoint uploads in the
background (pipelines.train.worker), so that wait and the logging run on a thread of their
own, in epoch order, while the next epoch trains.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import ray.train

from pipelines.common.names import METRICS, VAL_FID, Tag
from pipelines.common.text import duration
from pix2pix_core import Pix2Pix
from pix2pix_core.training import LOSS_NAMES

# (reported name, label, decimals) of the validation metrics on the progress line
_SHOWN = (
    (METRICS["l1"].reported, "L1", 4),
    (METRICS["psnr"].reported, "PSNR", 2),
    (METRICS["ssim"].reported, "SSIM", 3),
    (VAL_FID, "FID", 1),
)


class EpochLogger:
    """Rank 0's MLflow client for one run."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        # MLflow imported here, by rank 0 only: the other workers and Ray Train's controller
        # import this module too, and MLflow's import costs each of them about a second.
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="epoch-log")
        self._pending: list[Future] = []

    def tag_execution(self, model: Pix2Pix) -> None:
        """How rank 0 ran the step: the auto switches resolve on each worker's device."""
        tags = {
            Tag.DEVICE: str(model.device),
            Tag.PRECISION: "bf16 autocast" if model.autocast else "fp32",
            Tag.CHANNELS_LAST: str(model.channels_last),
        }
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def log(self, epoch: int, metrics: dict[str, float], grid: np.ndarray | None) -> None:
        from pipelines.common.tracking import log_metrics  # MLflow: see __init__

        values = {k: v for k, v in metrics.items() if k != "epoch"}
        log_metrics(self.client, self.run_id, values, step=epoch)
        if grid is not None:
            self.client.log_image(self.run_id, grid, artifact_file=grid_artifact(epoch))

    def log_when_registered(
        self, epoch: int, metrics: dict[str, float], grid: np.ndarray | None
    ) -> None:
        """`log` the epoch once Ray Train has registered it (see the module docstring), on
        this logger's thread; a failure of an earlier epoch's logging is raised here."""
        self._raise_failures()

        def log() -> None:
            ray.train.get_all_reported_checkpoints()
            self.log(epoch, metrics, grid)

        self._pending.append(self._thread.submit(log))

    def close(self, *, wait: bool = True) -> None:
        """Finish (`wait`: every epoch registered and logged, failures raised) or drop what
        is pending (the run failed: its epochs were not all registered)."""
        self._thread.shutdown(wait=wait, cancel_futures=not wait)
        if wait:
            self._raise_failures()

    def __enter__(self) -> EpochLogger:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(wait=exc_type is None)

    def _raise_failures(self) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            future.result()


def grid_artifact(epoch: int) -> str:
    """Where the sample grid of `epoch` lives among the run's artifacts."""
    return f"samples/epoch_{epoch:04d}.png"


def sample_grid(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """(input, output, target) uint8 H x W x 3 triples -> one image, a triple per row."""
    if not rows:
        return None
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)


def progress_line(epoch: int, total: int, metrics: dict[str, Any], eta_s: float) -> str:
    """One line per epoch: losses, validation metrics, throughput, time left."""
    losses = " ".join(f"{k} {metrics[k]:.3f}" for k in LOSS_NAMES if k in metrics)
    val = " ".join(f"{label} {metrics[key]:.{d}f}" for key, label, d in _SHOWN if key in metrics)
    return (
        f"epoch {epoch}/{total} | {losses} | val {val} | "
        f"{metrics.get('images_per_s', 0.0):.1f} img/s | ETA {duration(eta_s)}"
    )
