"""Image-quality metrics for evaluation: L1, PSNR and SSIM over a whole split."""

from __future__ import annotations

import torch
from torch import nn


class ImageMetrics(nn.Module):
    """Accumulates ``update(fake, real)`` batches (float NCHW in [-1, 1]); ``compute()`` gives
    ``{"l1", "psnr", "ssim"}``.

    L1 is measured in [-1, 1], the training loss's scale (before ``lambda_l1``). PSNR and SSIM
    see the images mapped to [0, 1] with ``data_range=1``; both are per-image values averaged
    over all images. Under torch.distributed, ``compute`` reduces across ranks (torchmetrics).
    """

    def __init__(self) -> None:
        super().__init__()
        # Imported here: torchmetrics.image costs seconds at import, which every process that
        # only trains or translates would otherwise pay.
        from torchmetrics import MeanAbsoluteError
        from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

        self.l1 = MeanAbsoluteError()
        self.psnr = PeakSignalNoiseRatio(
            data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3)
        )
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)

    @torch.no_grad()
    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        if fake.shape != real.shape or fake.ndim != 4:
            raise ValueError(
                f"fake {tuple(fake.shape)} and real {tuple(real.shape)} must be NCHW of one shape"
            )
        device = self.l1.device
        # contiguous: torchmetrics reshapes with .view, which channels_last tensors refuse.
        fake = fake.to(device, torch.float32).contiguous()
        real = real.to(device, torch.float32).contiguous()
        self.l1.update(fake, real)
        fake01, real01 = (fake.clamp(-1, 1) + 1) / 2, (real.clamp(-1, 1) + 1) / 2
        self.psnr.update(fake01, real01)
        self.ssim.update(fake01, real01)

    def compute(self) -> dict[str, float]:
        return {
            "l1": float(self.l1.compute()),
            "psnr": float(self.psnr.compute()),
            "ssim": float(self.ssim.compute()),
        }

    def reset(self) -> None:
        for metric in (self.l1, self.psnr, self.ssim):
            metric.reset()
