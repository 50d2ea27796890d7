"""The registered model: an MLflow pyfunc that translates a batch of RGB images.

Input: uint8 N x H x W x 3. Output: uint8 N x H x W x 3, the translated batch, made as
`pix2pix translate` makes it by default: each image resampled to the scale the model was
trained at, translated in tiles of the model's size with its recorded test-time
semantics (pix2pix_core.inference), and resampled back to its own size. A colorization
model (`dataset_mode` colorization in its settings) colours the lightness of its RGB
inputs and gives RGB.

This file is logged as the model's code ("models from code"): MLflow runs it when the model
is loaded, and `pix2pix_core` travels with the model as its code path. It imports torch,
numpy, mlflow and pix2pix_core only, so a serving machine needs neither Ray nor this
project installed.

The model's artifact `generator` is a `pix2pix_core.model_folder` (the weights with their
config, read with `weights_only=True`, and the inference settings as JSON).
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch

from pix2pix_core.geometry import model_input_size, resample
from pix2pix_core.inference import (
    TestTimeGenerator,
    default_overlap,
    sample_seeds,
    translate_uint8,
)
from pix2pix_core.model_folder import ARTIFACT, read_model_folder

BATCH_SIZE = 8  # tiles per forward; outputs do not depend on it (pix2pix_core.inference)


def translate_images(
    generator: TestTimeGenerator,
    images: np.ndarray,
    *,
    tile: int,
    load_size: int | None,
    preprocess: str = "resize_and_crop",
    output_nc: int = 3,
    colorization: bool = False,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """uint8 N x H x W x C -> uint8 N x H x W x C', as `pix2pix translate` does by default:
    each image resampled to the scale the model was trained at, translated in tiles of the
    model's size and resampled back to its own size. `colorization`: RGB in, RGB out."""
    # 1. preprocess
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected a uint8 batch N x H x W x C, got {images.dtype} {images.shape}")
    height, width = images.shape[1:3]
    size = model_input_size(
        width, height, mode="auto", tile=tile, load_size=load_size, preprocess=preprocess
    )
    inputs = [resample(image, size[1], size[0]) for image in images]

    # 2. generate
    def forward(x: torch.Tensor) -> torch.Tensor:
        return generator(x.to(device), sample_seeds(x)).float().cpu()

    with torch.inference_mode():
        outputs = translate_uint8(
            forward,
            inputs,
            tile=tile,
            overlap=default_overlap(tile),
            batch_size=BATCH_SIZE,
            colorization=colorization,
        )
        # 3. postprocess
        translated = [resample(out, height, width) for out in outputs]
    if not translated:
        return np.zeros((0, height, width, 3 if colorization else output_nc), np.uint8)
    return np.stack(translated)


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """pix2pix generator as a pyfunc: images in, translated images out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        module, config, settings = read_model_folder(context.artifacts[ARTIFACT], self.device)
        self.generator = TestTimeGenerator(module, eval_mode=bool(settings["eval_mode"]))
        self.output_nc = config.output_nc
        self.tile = int(settings["crop_size"])
        self.load_size = settings.get("load_size")
        self.preprocess = settings.get("preprocess") or "resize_and_crop"
        self.colorization = settings.get("dataset_mode") == "colorization"

    # `np.ndarray` is a hint MLflow infers no schema from: the logged signature governs.
    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: np.ndarray,
        params: dict | None = None,
    ) -> np.ndarray:
        """uint8 N x H x W x 3 -> uint8 N x H x W x 3."""
        images = np.asarray(model_input)
        if images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images, got {images.dtype}")
        return translate_images(
            self.generator,
            images,
            tile=self.tile,
            load_size=self.load_size,
            preprocess=self.preprocess,
            output_nc=self.output_nc,
            colorization=self.colorization,
            device=self.device,
        )


mlflow.models.set_model(GeneratorModel())
