"""`pix2pix translate`: bulk translation of image archives with Ray Data, resumable, with a
manifest that accounts for every input.

    from pipelines.translate import TranslateOptions, translate
    summary = translate(TranslateOptions(model="models:/facades@champion", input=..., output=...))
"""

from typing import TYPE_CHECKING

from pix2pix_core.lazy import lazy_exports

if TYPE_CHECKING:
    from pipelines.translate.job import TranslateSummary, add_arguments, run, translate
    from pipelines.translate.options import TranslateOptions

__all__ = ["TranslateOptions", "TranslateSummary", "add_arguments", "run", "translate"]

# Each name loads its module on first use: a Ray worker that imports one module of this
# package (a task's function, a training worker's loop) does not also import what the
# verb's driver needs (MLflow, Ray Train, torch: seconds of CPU in each process).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "job": ("TranslateSummary", "add_arguments", "run", "translate"),
        "options": ("TranslateOptions",),
    },
)
