"""`pix2pix demo` (what `make demo` runs): the whole workflow on built-in sample photos,
with a report, on a laptop with no data and no network.

    from pipelines.demo import DemoOptions, demo
    report = demo(DemoOptions(output_dir="demo"))
"""

from typing import TYPE_CHECKING

from pix2pix_core.lazy import lazy_exports

if TYPE_CHECKING:
    from pipelines.demo.job import DemoOptions, add_arguments, demo, run

__all__ = ["DemoOptions", "add_arguments", "demo", "run"]

# Each name loads its module on first use: a Ray worker that imports one module of this
# package (a task's function, a training worker's loop) does not also import what the
# verb's driver needs (MLflow, Ray Train, torch: seconds of CPU in each process).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "job": ("DemoOptions", "add_arguments", "demo", "run"),
    },
)
