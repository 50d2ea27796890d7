"""`pix2pix prepare SRC DST`: list, pair, decode, validate and resize an image dataset into
Parquet shards, `dataset.json` and a quarantine of the inputs that cannot be used.

    from pipelines.prepare import PrepareOptions, prepare
    summary = prepare("s3://raw/facades", "s3://prepared/facades", PrepareOptions(load_size=286))
"""

from pipelines.prepare.job import PrepareSummary, add_arguments, prepare, run
from pipelines.prepare.options import PrepareOptions

__all__ = ["PrepareOptions", "PrepareSummary", "add_arguments", "prepare", "run"]
