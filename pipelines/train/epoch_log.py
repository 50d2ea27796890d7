"""What rank 0 tells MLflow and the user after each epoch.

The driver created the MLflow run and logged the parameters and tags (pipelines.train.driver);
rank 0 adds the epoch's metrics and a sample grid (input | output | target) to it, and
prints one progress line. No other rank talks to MLflow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
