"""The registered model: an MLflow pyfunc that translates a batch of RGB images.

Input: uint8 N x H x W x 3. Output: uint8 N x H x W x 3, the translated batch. Sides that
the U-Net can take (divisible by 2**depth) run at their own size; any other size is
resized to the model's size, translated, and resized back.

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

from pix2pix_core.model_folder import ARTIFACT, read_model_folder
from pix2pix_core.transforms import resize, to_tensor, to_uint8

# In eval mode images are independent and go EVAL_CHUNK at a time. In train mode (the
# paper's inference: batch-norm statistics of the batch) each goes alone, so an output
# never depends on which other images share its request.
EVAL_CHUNK = 8


def translate_images(
    module: torch.nn.Module,
    images: np.ndarray,
    *,
    size: int,
    multiple: int,
    eval_mode: bool,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """uint8 N x H x W x 3 -> uint8 N x H x W x 3 through the generator."""
    # 1. preprocess
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected a uint8 batch N x H x W x 3, got shape {images.shape}")
    height, width = images.shape[1:3]
    fits = height % multiple == 0 and width % multiple == 0
    module.train(not eval_mode)
    chunk = EVAL_CHUNK if eval_mode else 1
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), chunk):
            x = to_tensor(images[start : start + chunk]).to(device)
            if not fits:
                x = resize(x, (size, size))
            # 2. generate
            y = module(x)
            # 3. postprocess
            if not fits:
                y = resize(y, (height, width))
            outputs.append(to_uint8(y.cpu()))
    if not outputs:
        return np.zeros_like(images)
    return np.concatenate(outputs)


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """pix2pix generator as a pyfunc: images in, translated images out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        module, config, settings = read_model_folder(context.artifacts[ARTIFACT], self.device)
        self.module = module
        self.size = int(settings["crop_size"])
        self.multiple = 2**config.depth
        self.eval_mode = bool(settings["eval_mode"])

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
            self.module,
            images,
            size=self.size,
            multiple=self.multiple,
            eval_mode=self.eval_mode,
            device=self.device,
        )


mlflow.models.set_model(GeneratorModel())
