"""`pix2pix tune`: Ray Tune sweeps over lambda_L1, the PatchGAN size N and the norm, each
trial a `pix2pix train` run and an MLflow child run.

    from pipelines.tune import TuneOptions, tune
    result = tune(train_config, TuneOptions(num_samples=8), common)
"""

from pipelines.tune.options import TuneOptions
from pipelines.tune.plan import TuneResult
from pipelines.tune.sweep import add_arguments, run, tune

__all__ = ["TuneOptions", "TuneResult", "add_arguments", "run", "tune"]
