"""`pix2pix tune`: Ray Tune sweeps over lambda_L1, the PatchGAN size N and the norm, each
trial a `pix2pix train` run and an MLflow child run.

    from pipelines.tune import TuneOptions, tune
    result = tune(train_config, TuneOptions(num_samples=8), common)
"""

from typing import TYPE_CHECKING

from pix2pix_core.lazy import lazy_exports

if TYPE_CHECKING:
    from pipelines.tune.options import TuneOptions
    from pipelines.tune.plan import TuneResult
    from pipelines.tune.sweep import add_arguments, run, tune

__all__ = ["TuneOptions", "TuneResult", "add_arguments", "run", "tune"]

# Each name loads its module on first use: a Ray worker that imports one module of this
# package (a task's function, a training worker's loop) does not also import what the
# verb's driver needs (MLflow, Ray Train, torch: seconds of CPU in each process).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "options": ("TuneOptions",),
        "plan": ("TuneResult",),
        "sweep": ("add_arguments", "run", "tune"),
    },
)
