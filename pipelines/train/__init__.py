"""`pix2pix train`: Ray Train DDP of the GAN, checkpointed to storage, resumable, in MLflow.

from pipelines.train import TrainConfig, train
result = train(TrainConfig().replace(data="prepared/facades", n_epochs=5), common)
"""

from pipelines.train.driver import TrainResult, add_arguments, run, train
from pipelines.train.options import TrainConfig, TrainOptions

__all__ = ["TrainConfig", "TrainOptions", "TrainResult", "add_arguments", "run", "train"]
