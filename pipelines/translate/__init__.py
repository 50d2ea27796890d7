"""`pix2pix translate`: bulk translation of image archives with Ray Data, resumable, with a
manifest that accounts for every input.

    from pipelines.translate import TranslateOptions, translate
    summary = translate(TranslateOptions(model="models:/facades@champion", input=..., output=...))
"""

from pipelines.translate.job import TranslateSummary, add_arguments, run, translate
from pipelines.translate.options import TranslateOptions

__all__ = ["TranslateOptions", "TranslateSummary", "add_arguments", "run", "translate"]
