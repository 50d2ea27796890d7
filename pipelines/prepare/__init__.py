"""`pix2pix prepare SRC DST`: list, pair, decode, validate and resize an image dataset into
Parquet shards, `dataset.json` and a quarantine of the inputs that cannot be used.

    from pipelines.prepare import PrepareOptions, prepare
    summary = prepare("s3://raw/facades", "s3://prepared/facades", PrepareOptions(load_size=286))
"""

from typing import TYPE_CHECKING

from pix2pix_core.lazy import lazy_exports

if TYPE_CHECKING:
    from pipelines.prepare.job import PrepareSummary, add_arguments, prepare, run
    from pipelines.prepare.options import PrepareOptions

__all__ = ["PrepareOptions", "PrepareSummary", "add_arguments", "prepare", "run"]

# Each name loads its module on first use: a Ray worker that imports one module of this
# package (a task's function, a training worker's loop) does not also import what the
# verb's driver needs (MLflow, Ray Train, torch: seconds of CPU in each process).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "job": ("PrepareSummary", "add_arguments", "prepare", "run"),
        "options": ("PrepareOptions",),
    },
)
