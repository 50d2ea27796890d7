"""What rank 0 tells MLflow and the user after each epoch.

The driver created the MLflow run and logged the parameters and tags (pipelines.train.driver);
rank 0 adds the epoch's metrics and a sample grid (input | output | target) to it, and
prints one progress line. No other rank talks to MLflow.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from pipelines.common.text import duration

LOSSES = ("G_GAN", "G_L1", "D_real", "D_fake")
VAL_METRICS = ("val_L1", "val_PSNR", "val_SSIM", "val_FID")


class EpochLogger:
    """Rank 0's MLflow client for one run."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id

    def tag_execution(self, model: Any) -> None:
        """How rank 0 ran the step: the auto switches resolve on each worker's device."""
        tags = {
            "pix2pix.device": str(model.device),
            "pix2pix.precision": "bf16 autocast" if model.autocast else "fp32",
            "pix2pix.channels_last": str(model.channels_last),
        }
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def log(self, epoch: int, metrics: dict[str, float], grid: np.ndarray | None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, epoch)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value)
        ]
        self.client.log_batch(self.run_id, metrics=batch)
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
    losses = " ".join(f"{k} {metrics[k]:.3f}" for k in LOSSES if k in metrics)
    val = [
        f"L1 {metrics['val_L1']:.4f}" if "val_L1" in metrics else "",
        f"PSNR {metrics['val_PSNR']:.2f}" if "val_PSNR" in metrics else "",
        f"SSIM {metrics['val_SSIM']:.3f}" if "val_SSIM" in metrics else "",
        f"FID {metrics['val_FID']:.1f}" if "val_FID" in metrics else "",
    ]
    return (
        f"epoch {epoch}/{total} | {losses} | val {' '.join(v for v in val if v)} | "
        f"{metrics.get('images_per_s', 0.0):.1f} img/s | ETA {duration(eta_s)}"
    )
