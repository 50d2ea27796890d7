"""`pix2pix evaluate | register | promote`: judge a generator on a prepared split, register
it as an MLflow pyfunc model, and move the `champion` alias only on evidence.

    from pipelines.registry import evaluate, register, promote
"""

from typing import TYPE_CHECKING

from pix2pix_core.lazy import lazy_exports

if TYPE_CHECKING:
    from pipelines.registry.evaluation import evaluate
    from pipelines.registry.promotion import promote
    from pipelines.registry.registration import register

__all__ = ["evaluate", "promote", "register"]

# Each name loads its module on first use: a Ray worker that imports one module of this
# package (a task's function, a training worker's loop) does not also import what the
# verb's driver needs (MLflow, Ray Train, torch: seconds of CPU in each process).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "evaluation": ("evaluate",),
        "promotion": ("promote",),
        "registration": ("register",),
    },
)
