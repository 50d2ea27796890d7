"""`pix2pix retrain`: prepare -> train | tune -> evaluate -> register -> promote as one
resumable workflow, each step skipped when its result is already in the run's folder.

    from pipelines.retrain import load_config, retrain
"""

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
