"""`pix2pix retrain`: prepare -> train | tune -> evaluate -> register -> promote as one
resumable workflow, each step skipped when its result is already in the run's folder.

    from pipelines.retrain import load_config, retrain
"""

from typing import TYPE_CHECKING

from pix2pix_core.lazy import lazy_exports

if TYPE_CHECKING:
    from pipelines.retrain.options import RetrainConfig, RetrainOptions, load_config
    from pipelines.retrain.workflow import RetrainSummary, add_arguments, retrain, run

__all__ = [
    "RetrainConfig",
    "RetrainOptions",
    "RetrainSummary",
    "add_arguments",
    "load_config",
    "retrain",
    "run",
]

# Each name loads its module on first use: a Ray worker that imports one module of this
# package (a task's function, a training worker's loop) does not also import what the
# verb's driver needs (MLflow, Ray Train, torch: seconds of CPU in each process).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "options": ("RetrainConfig", "RetrainOptions", "load_config"),
        "workflow": ("RetrainSummary", "add_arguments", "retrain", "run"),
    },
)
