"""The config of `pix2pix retrain`: one flat YAML (or flags) over every verb's options.

Where two verbs have an option of the same name the flat file has one key:
  metric      picks the sweep's best trial and decides the promotion
  seed        the val carving of prepare and the training seed
  batch_size  training's; evaluation and promotion use `eval_batch_size`
  eval        training's validation mode; evaluation runs the model the way it was saved,
              which is that same setting
  data        not a key: the data is what prepare makes from `source`
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

from pipelines.config.fields import option
from pipelines.config.groups import CommonOptions, RayOptions
from pipelines.config.loader import load_options
from pipelines.prepare.options import PrepareOptions
from pipelines.train.options import TrainConfig
from pipelines.tune.options import TuneOptions


@dataclass(frozen=True, kw_only=True)
class RetrainOptions:
    """The workflow: the raw data, the registered model, the promotion gate."""

    source: str | None = option(
        None,
        "the raw A/B image pairs: a folder URL or a manifest file (prepare's SRC)",
        required=True,
    )
    name: str = option("pix2pix", "registered model; its `champion` alias moves only on evidence")
    min_improvement: float = option(
        0.0, "margin a new model must beat the champion by, in units of --metric"
    )
    eval_batch_size: int = option(16, "images per forward in evaluate and promote")

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("source is required: the raw image pairs to prepare (a URL)")
        if not self.name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"name must be letters, digits, '.', '_', '-', got {self.name!r}")
        if not self.min_improvement >= 0:
            raise ValueError(f"min_improvement must be >= 0, got {self.min_improvement!r}")
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be positive, got {self.eval_batch_size!r}")


OPTION_GROUPS = (
    RetrainOptions,
    PrepareOptions,
    *TrainConfig.GROUPS,
    TuneOptions,
    CommonOptions,
    RayOptions,
)


@dataclass(frozen=True, kw_only=True)
class RetrainConfig:
    """Every setting of one retrain run, as `--config` and the flags give them."""

    retrain: RetrainOptions
    prepare: PrepareOptions = field(default_factory=PrepareOptions)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneOptions = field(default_factory=TuneOptions)
    common: CommonOptions = field(default_factory=CommonOptions)
    ray_address: str | None = None

    @property
    def sweeps(self) -> bool:
        """A search space in the config makes the train step a sweep."""
        return bool(self.tune.search_space)


def load_config(args: argparse.Namespace) -> RetrainConfig:
    """The config of `--config` and the flags given (see the module docstring)."""
    retrain, prepare, *rest = load_options(args, *OPTION_GROUPS)
    *train_groups, tune, common, ray_opts = rest
    return RetrainConfig(
        retrain=retrain,
        prepare=prepare,
        train=TrainConfig.of(tuple(train_groups)),
        tune=tune,
        common=common,
        ray_address=ray_opts.ray_address,
    )
