"""`pix2pix promote`: move the `champion` alias only on evidence.

The candidate and the current champion are evaluated on the same prepared split with the
same code. The candidate always becomes the `challenger`; it becomes the `champion` only
if it beats the champion by at least `min_improvement` in the metric's own units (or if
there is no champion yet). The decision, both scores and the split's fingerprint are
recorded as tags on both versions, so the registry itself says why an alias moved or not.
A refusal is a normal outcome: the command exits 0 either way.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.common.dataset import split_fingerprint
from pipelines.common.errors import UserError
from pipelines.common.models import load_generator_from_uri, resolve_device
from pipelines.common.names import Tag, get_metric
from pipelines.common.storage import Location
from pipelines.common.tracking import resolve_tracking_uri
from pipelines.config.fields import option
from pipelines.config.groups import StorageOptions, TrackingOptions
from pipelines.config.loader import add_options, load_options
from pipelines.registry.evaluation import evaluate

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Decision:
    """What `promote` decided, and the evidence."""

    name: str
    candidate_version: str
    champion_version: str | None  # the champion before the decision; None if there was none
    promoted: bool
    reason: str
    metric: str
    split: str
    split_fingerprint: str
    candidate_score: float
    champion_score: float | None
    min_improvement: float

    @property
    def improvement(self) -> float | None:
        """How much better the candidate is, in metric units (positive = better)."""
        if self.champion_score is None:
            return None
        return improvement(self.metric, self.candidate_score, self.champion_score)

    def summary(self) -> str:
        verdict = "PROMOTED" if self.promoted else "REFUSED"
        return f"{self.name} v{self.candidate_version}: {verdict}: {self.reason}"

    def tags(self) -> dict[str, str]:
        values = {
            "decision": "promoted" if self.promoted else "refused",
            "reason": self.reason,
            "metric": self.metric,
            "split": self.split,
            "split_fingerprint": self.split_fingerprint,
            "candidate_version": self.candidate_version,
            "candidate_score": repr(self.candidate_score),
            "champion_version": self.champion_version or "",
            "champion_score": "" if self.champion_score is None else repr(self.champion_score),
            "min_improvement": repr(self.min_improvement),
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return {Tag.PROMOTION_PREFIX + k: v for k, v in values.items()}


def improvement(metric: str, candidate: float, champion: float) -> float:
    """candidate - champion where higher is better, champion - candidate where lower is."""
    return candidate - champion if get_metric(metric).higher_is_better else champion - candidate


def decide(
    metric: str, candidate: float, champion: float | None, min_improvement: float
) -> tuple[bool, str]:
    """(promote?, why): better by at least `min_improvement`, and strictly better."""
    direction = "higher" if get_metric(metric).higher_is_better else "lower"
    if champion is None:
        return True, f"no champion yet; candidate {metric}={candidate:.6g}"
    if not math.isfinite(candidate):
        return False, f"candidate {metric} is {candidate}"
    gain = improvement(metric, candidate, champion)
    scores = f"candidate {metric}={candidate:.6g}, champion {metric}={champion:.6g}"
    if gain > 0 and gain >= min_improvement:
        return (
            True,
            f"{scores}: better by {gain:.6g} ({direction} is better) >= {min_improvement:g}",
        )
    if gain > 0:
        return False, f"{scores}: better by only {gain:.6g}, needs {min_improvement:g}"
    return False, f"{scores}: not better ({direction} is better)"


def current_champion(client: MlflowClient, name: str) -> str | None:
    """The version the `champion` alias points at, or None."""
    version = client.get_registered_model(name).aliases.get(CHAMPION)
    return None if version is None else str(version)


def promote(
    name: str,
    candidate_version: str | int,
    dst: Location | str,
    split: str = "val",
    metric: str = "l1",
    min_improvement: float = 0.0,
    *,
    batch_size: int = 16,
    eval_mode: bool | None = None,
    storage_options: dict | None = None,
    tracking_uri: str | None = None,
    device: str = "cpu",
) -> Decision:
    """Evaluate `name` v`candidate_version` against the champion; move aliases; tag both.

    `eval_mode` None runs each model in the mode it was validated in. `tracking_uri` None
    keeps MLflow's current tracking URI (set it with
    `pipelines.common.tracking.setup_mlflow` or `mlflow.set_tracking_uri`).
    """
    get_metric(metric)
    if min_improvement < 0 or not math.isfinite(min_improvement):
        raise UserError(f"min_improvement must be a number >= 0, got {min_improvement!r}")
    if not isinstance(dst, Location):
        dst = Location.parse(dst, storage_options)
    dst.check_access("--data")  # before MLflow is asked anything
    if tracking_uri is not None:
        mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    client = MlflowClient()
    candidate = str(candidate_version)
    try:
        client.get_model_version(name, candidate)
    except MlflowException:
        raise UserError(f"no version {candidate} of registered model {name!r}") from None
    fingerprint = split_fingerprint(dst, split)
    champion = current_champion(client, name)

    def score(version: str) -> float:
        loaded = load_generator_from_uri(
            f"models:/{name}/{version}", tracking_uri=mlflow.get_tracking_uri(), device=device
        )
        metrics = evaluate(loaded, dst, split, batch_size=batch_size, eval_mode=eval_mode)
        return metrics[metric]

    candidate_score = score(candidate)
    if champion == candidate:
        champion_score = candidate_score
        promoted, reason = False, f"v{candidate} is already the champion"
    else:
        champion_score = None if champion is None else score(champion)
        promoted, reason = decide(metric, candidate_score, champion_score, min_improvement)

    decision = Decision(
        name=name,
        candidate_version=candidate,
        champion_version=champion,
        promoted=promoted,
        reason=reason,
        metric=metric,
        split=split,
        split_fingerprint=fingerprint,
        candidate_score=candidate_score,
        champion_score=champion_score,
        min_improvement=min_improvement,
    )
    # Record first, then move aliases: a crash in between leaves evidence, not a silent move.
    tags = decision.tags()
    for version in {candidate, champion} - {None}:
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, candidate)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, candidate)
    return decision


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PromoteOptions:
    """What to promote and how it is judged."""

    name: str | None = option(None, "registered model name", required=True)
    candidate: str | None = option(None, "the candidate version number", required=True)
    data: str | None = option(
        None, "prepared dataset (the output of `pix2pix prepare`)", required=True
    )
    split: str = option("val", "split both models are evaluated on")
    metric: str = option("l1", "metric that decides: l1 (lower) | psnr | ssim (higher)")
    min_improvement: float = option(0.0, "margin the candidate must win by, in metric units")
    batch_size: int = option(16, "evaluation batch size")
    eval: bool | None = option(
        None, "dropout off, running statistics; unset: as each model was validated"
    )
    device: str = option("auto", "torch device: auto (CUDA if torch sees a GPU), cpu, cuda:N")

    def __post_init__(self) -> None:
        for flag in ("name", "candidate", "data"):
            if not getattr(self, flag):
                raise ValueError(f"--{flag} is required")
        get_metric(self.metric)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, PromoteOptions, StorageOptions, TrackingOptions)


def run(args: argparse.Namespace) -> int:
    opts, storage, tracking = load_options(args, PromoteOptions, StorageOptions, TrackingOptions)
    device = resolve_device(opts.device)
    decision = promote(
        opts.name,
        opts.candidate,
        Location.parse(opts.data, storage.storage_options),
        opts.split,
        opts.metric,
        opts.min_improvement,
        batch_size=opts.batch_size,
        eval_mode=opts.eval,
        tracking_uri=resolve_tracking_uri(tracking.tracking_uri),
        device=device,
    )
    print(decision.summary())
    return 0
