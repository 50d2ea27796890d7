"""`pix2pix evaluate | register | promote`: judge a generator on a prepared split, register
it as an MLflow pyfunc model, and move the `champion` alias only on evidence.

    from pipelines.registry import evaluate, register, promote
"""

from pipelines.registry.evaluation import evaluate
from pipelines.registry.promotion import promote
from pipelines.registry.registration import register

__all__ = ["evaluate", "promote", "register"]
