"""The names the jobs share: MLflow tags, the metric vocabulary, and the files in storage.

One job writes what another reads (train's run folder, which the model loader, tune and
retrain read; the tags that register reads off a training run), so each name is defined
here once. Importing this module costs nothing: no MLflow, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipelines.common.errors import UserError


class Tag:
    """MLflow tags (on runs, and on registered versions where noted)."""

    GIT_COMMIT = "git_commit"  # the code that ran
    VERB = "pix2pix.verb"  # the verb that opened the run
    DATASET = "pix2pix.dataset"  # the prepared dataset's URL
    DATASET_FINGERPRINT = "pix2pix.dataset_fingerprint"
    RUN_FOLDER = "pix2pix.run_folder"  # a training or retrain run's folder in storage
    BEST_CHECKPOINT = "pix2pix.best_checkpoint"  # a training run's best checkpoint (a URL)
    # Ray Tune's own name for the best checkpoint; the sweep's runs carry it beside ours.
    TUNE_BEST_CHECKPOINT = "checkpoint_best"
    DEVICE = "pix2pix.device"  # how rank 0 ran the step
    PRECISION = "pix2pix.precision"
    CHANNELS_LAST = "pix2pix.channels_last"
    SWEEP_FOLDER = "pix2pix.sweep_folder"
    TRIAL_ID = "pix2pix.trial_id"
    TRIAL_STATUS = "pix2pix.trial_status"
    BEST_TRIAL_ID = "pix2pix.best_trial_id"
    BEST_RUN_ID = "pix2pix.best_run_id"
    BEST_VALUE_PREFIX = "best."  # + a searched option: the best trial's value
    MODEL_URI = "pix2pix.model_uri"  # a model logged in the run (the sweep's best)
    MODEL_CHECKPOINT = "pix2pix.model_checkpoint"  # the checkpoint that model came from
    MODEL = "pix2pix.model"  # evaluate --log: the model evaluated
    SPLIT = "pix2pix.split"
    SPLIT_FINGERPRINT = "pix2pix.split_fingerprint"
    SOURCE = "pix2pix.source"  # retrain: the raw data
    RUN_RECORD = "pix2pix.run_record"  # retrain: its retrain.json
    SUMMARY = "pix2pix.summary"  # retrain: the invocation's one-line summary
    STEP_PREFIX = "step."  # + a retrain step's name: ran | skipped
    # On registered versions: where a retrain run registered it, so a rerun does not twice.
    REGISTER_KEY = "retrain.register_key"
    RETRAIN_RUN_FOLDER = "retrain.run_folder"
    RETRAIN_PARENT_RUN = "retrain.parent_run_id"
    PROMOTION_PREFIX = "promotion."  # + the decision's fields (pipelines.registry.promotion)


class File:
    """Files the jobs leave in storage (and artifacts they log)."""

    # a prepared dataset (pipelines.common.dataset)
    DATASET_INFO = "dataset.json"
    QUARANTINE = "quarantine.parquet"
    # a training run's folder, STORAGE_PATH/RUN_NAME (pipelines.common.checkpoints)
    RUN = "run.json"  # settings, dataset fingerprint, MLflow run id
    RUN_RESULT = "result.json"  # written when the run completes
    CHECKPOINT = "checkpoint.pt"  # in each epoch_NNNN/
    CHECKPOINT_META = "checkpoint.json"
    # a sweep's folder
    SWEEP = "sweep.json"
    SWEEP_RESULT = "result.json"
    SWEEP_TRIALS = "train"  # the trials' training runs: SWEEP/train/trial-<id>
    # a sweep's parent run: artifacts
    RESULTS_TABLE = "results.csv"
    BEST_CONFIG = "best_config.yaml"  # a `pix2pix train --config`
    SEARCH_SPACE = "search_space.yaml"
    # a retrain run's folder
    RETRAIN_RECORD = "retrain.json"
    STEP_RECORD = "step.json"  # in each step's folder
    # a translation's output folder
    MANIFEST_DIR = "_manifest"
    MANIFEST = "manifest.jsonl"
    TRANSLATE_JOB = "job.json"
    MANIFEST_PARTS = "parts"


def epoch_dir(epoch: int) -> str:
    """The folder of `epoch`'s checkpoint inside a training run's folder."""
    return f"epoch_{epoch:04d}"


@dataclass(frozen=True)
class Metric:
    """An image metric by its two names: `name` where a model is judged (evaluate,
    promote, registry tags) and `reported`, what training reports after each epoch."""

    name: str
    reported: str
    higher_is_better: bool

    @property
    def mode(self) -> str:
        """Ray Tune's spelling of the better direction."""
        return "max" if self.higher_is_better else "min"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("l1", "val_L1", higher_is_better=False),
        Metric("psnr", "val_PSNR", higher_is_better=True),
        Metric("ssim", "val_SSIM", higher_is_better=True),
    )
}
METRIC_NAMES = tuple(METRICS)
VAL_FID = "val_FID"  # reported only with --fid_weights
CHECKPOINT_SCORE = METRICS["l1"]  # what "best checkpoint" means in a training run


def get_metric(name: str) -> Metric:
    """The metric called `name`; a UserError listing the choices otherwise."""
    if name not in METRICS:
        raise UserError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    return METRICS[name]


def judged(values: Mapping[str, float]) -> dict[str, float]:
    """{l1, psnr, ssim} from metrics named either way (`val_L1` or `l1`); others dropped."""
    out = {}
    for m in METRICS.values():
        for key in (m.name, m.reported):
            if key in values:
                out[m.name] = float(values[key])
    return out
