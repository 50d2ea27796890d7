"""`pix2pix train`: Ray Train DDP of the GAN, checkpointed to storage, resumable, in MLflow.

from pipelines.train import TrainConfig, train
result = train(TrainConfig().replace(data="prepared/facades", n_epochs=5), common)
"""

from typing import TYPE_CHECKING

from pix2pix_core.lazy import lazy_exports

if TYPE_CHECKING:
    from pipelines.train.driver import TrainResult, add_arguments, run, train
    from pipelines.train.options import TrainConfig, TrainOptions

__all__ = ["TrainConfig", "TrainOptions", "TrainResult", "add_arguments", "run", "train"]

# Each name loads its module on first use: a Ray worker that imports one module of this
# package (a task's function, a training worker's loop) does not also import what the
# verb's driver needs (MLflow, Ray Train, torch: seconds of CPU in each process).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "driver": ("TrainResult", "add_arguments", "run", "train"),
        "options": ("TrainConfig", "TrainOptions"),
    },
)
