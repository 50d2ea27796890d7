"""`pix2pix retrain --config retrain.yaml`: the whole workflow, resumable and schedulable.

    1. prepare    SOURCE -> RUN_FOLDER/prepare/dataset              (pix2pix prepare)
    2. train      RUN_FOLDER/train/RUN_NAME-<hex>                   (pix2pix train)
       or tune    RUN_FOLDER/tune/RUN_NAME-<hex>, when a search_space is given
    3. evaluate   the best checkpoint on the test split (val when there is none)
    4. register   a new version of NAME, tagged with this run
    5. promote    `champion` moves to it only if it beats the champion on the same split

Each is a `pipelines.retrain.runner.StepRunner` step under RUN_FOLDER = STORAGE_PATH/RUN_NAME,
chained with `after=`, so a rerun skips every step that is done for the same inputs and
continues at the one that failed or was killed. Prepare's input is the listing
fingerprint of SOURCE (no image is read to compute it): a scheduled run on unchanged
data skips every step, starts no Ray and says so. A crash in training reruns the train
step, and training continues from its last checkpoint (its run name comes from the data
and the settings, so the rerun finds it).

The config is one flat YAML of the verbs' flags (`pipelines.retrain.options`).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from pipelines.common.errors import UserError
from pipelines.common.storage import Location
from pipelines.common.tracking import resolve_tracking_uri
from pipelines.config.fields import flat, learned
from pipelines.config.loader import add_options, read_yaml
from pipelines.prepare.sources import source_fingerprint
from pipelines.registry.promotion import current_champion
from pipelines.retrain import steps as retrain_steps
from pipelines.retrain.options import OPTION_GROUPS, RetrainConfig, load_config
from pipelines.retrain.record import RetrainRecord
from pipelines.retrain.runner import StepRunner
from pipelines.retrain.steps import RetrainPlan
from pipelines.train.plan import check_run_name, check_shapes
from pipelines.tune.search import load_space


@dataclass(frozen=True, kw_only=True)
class RetrainSummary:
    """What one invocation did; `line` is what it prints last."""

    run_name: str
    run_folder: str
    parent_run_id: str
    steps: dict[str, str]  # step -> ran | skipped
    split: str | None
    metrics: dict[str, float]  # of the new model on `split`
    version: str | None  # the registered version of the new model
    promoted: bool | None
    champion: str | None  # the champion version after this run
    seconds: float
    name: str

    @property
    def unchanged(self) -> bool:
        return all(outcome == "skipped" for outcome in self.steps.values())

    @property
    def line(self) -> str:
        champion = f"champion {self.name} v{self.champion}" if self.champion else "no champion"
        where = f"run folder {self.run_folder}; MLflow run {self.parent_run_id}"
        if self.unchanged:
            return (
                f"retrain {self.run_name}: data and settings unchanged; every step was done "
                f"already and was skipped (nothing retrained); {champion}; {where}"
            )
        ran = [s for s, o in self.steps.items() if o == "ran"]
        skipped = [s for s, o in self.steps.items() if o == "skipped"]
        scores = " ".join(f"{k.upper()} {v:.4f}" for k, v in self.metrics.items())
        verdict = {True: "promoted", False: "not promoted", None: "not judged"}[self.promoted]
        return (
            f"retrain {self.run_name}: ran {', '.join(ran)}"
            + (f" (skipped {', '.join(skipped)}, done before)" if skipped else "")
            + f" in {self.seconds:.0f} s; v{self.version} on {self.split}: {scores}; "
            f"{verdict}; {champion}; {where}"
        )


def default_run_name(source: Location) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name).strip("-.") or "data"
    return f"retrain-{stem}"


def _check(cfg: RetrainConfig) -> None:
    """What would fail a later step, checked before the first one starts."""
    if cfg.train.train.data:
        raise UserError(
            f"data {cfg.train.train.data!r}: retrain prepares its own data from `source`; "
            "remove `data` from the config"
        )
    cfg.train.validate()
    crop, load = cfg.train.train.crop_size, cfg.prepare.load_size
    if crop > load:
        raise UserError(f"crop_size {crop} is larger than load_size {load}; crops come from it")
    check_shapes(cfg.train)


def _train_settings(cfg: RetrainConfig) -> dict[str, Any]:
    """What a training run learns from; options that only change how it runs are left out,
    so changing them (GPUs, retries) does not retrain a finished model."""
    return cfg.train.learned()


def _sweep_settings(cfg: RetrainConfig) -> dict[str, Any]:
    # The space's content, not its path: an edited file makes a new sweep.
    return {"sweep": learned(cfg.tune), "space": read_yaml(cfg.tune.search_space)}


class _Steps:
    """`StepRunner` plus what the invocation's record needs: which step is running, and
    whether each one ran or was skipped."""

    def __init__(self, run_dir: Location, record: RetrainRecord):
        self.runner = StepRunner(run_dir)
        self.record = record
        self.current = ""

    def run(self, name: str, inputs: dict[str, Any], fn, after: str | None = None) -> dict:
        self.current, ran = name, False

        def call() -> dict:
            nonlocal ran
            ran = True
            return fn()

        result = self.runner.run(name, inputs, call, after=[after] if after else [])
        self.record.step(name, "ran" if ran else "skipped")
        return result

    def fingerprint(self, name: str) -> str:
        return self.runner.record(name)["fingerprint"]


def _open(cfg: RetrainConfig) -> tuple[RetrainPlan, RetrainRecord, str]:
    """Check the config, list the source, open the invocation: (plan, record, listing)."""
    _check(cfg)
    options = cfg.common.storage_options
    source = Location.parse(cfg.retrain.source, options)
    storage = Location.parse(cfg.common.storage_path, options)
    run_name = check_run_name(cfg.common.run_name or default_run_name(source), "run_name")
    source.check_access("source")
    storage.check_access("storage_path", write=True)
    run_dir = storage.join(run_name)
    tracking_uri = resolve_tracking_uri(cfg.common.tracking_uri)
    common = dataclasses.replace(
        cfg.common, storage_path=storage.url, run_name=run_name, tracking_uri=tracking_uri
    )
    if cfg.sweeps:
        load_space(cfg.tune, cfg.train)  # a missing or bad file fails here
    # Listing SOURCE is the one thing every run does: it tells whether the data changed.
    listing = source_fingerprint(source, cfg.prepare.layout)

    record = RetrainRecord(run_dir, tracking_uri=tracking_uri, experiment=common.experiment)
    params = flat(cfg.retrain, cfg.prepare, *cfg.train.groups)
    if cfg.sweeps:
        params |= {f"tune.{k}": v for k, v in dataclasses.asdict(cfg.tune).items()}
    parent_run_id = record.open(run_name, source.url, params)
    print(
        f"retrain {run_name}: run folder {run_dir.url}, MLflow run {parent_run_id} "
        f"({tracking_uri})",
        flush=True,
    )
    plan = RetrainPlan(
        run_name=run_name,
        run_dir=run_dir,
        source=source,
        prepare=cfg.prepare,
        train=cfg.train,
        common=common,
        parent_run_id=parent_run_id,
        name=cfg.retrain.name,
        metric=cfg.tune.metric,
        min_improvement=cfg.retrain.min_improvement,
        eval_batch_size=cfg.retrain.eval_batch_size,
        ray_address=cfg.ray_address,
    )
    return plan, record, listing


def _run_steps(
    cfg: RetrainConfig,
    plan: RetrainPlan,
    run: _Steps,
    listing: str,
    fault_hook: dict[str, Any] | None,
) -> dict[str, Any]:
    # 1. prepare
    prepared = run.run(
        "prepare",
        {"source": plan.source.url, "files": listing, "options": cfg.prepare},
        lambda: retrain_steps.prepare(plan),
    )

    # 2. train, or tune: the run's name follows the prepared data and what is learned
    settings = _train_settings(cfg)
    if cfg.sweeps:
        trained_by = "tune"
        settings |= _sweep_settings(cfg)
        name = retrain_steps.training_name(plan, run.fingerprint("prepare"), settings)
        trained = run.run(
            "tune", settings, lambda: retrain_steps.tune(plan, name, cfg.tune), after="prepare"
        )
    else:
        trained_by = "train"
        name = retrain_steps.training_name(plan, run.fingerprint("prepare"), settings)
        trained = run.run(
            "train",
            settings,
            lambda: retrain_steps.train(plan, name, fault_hook=fault_hook),
            after="prepare",
        )

    # 3. evaluate, on test; on val only where the source has no test split
    split = "test" if prepared["counts"].get("test") else "val"
    checkpoint = trained["outputs"]["checkpoint"]

    def evaluate() -> dict[str, Any]:
        if split == "val":
            print(
                f"note: {plan.source.url} has no test split; evaluating on val, which also "
                "chose the best checkpoint, so the score is optimistic",
                flush=True,
            )
        return retrain_steps.evaluate(plan, checkpoint, split, trained.get("mlflow_run_id"))

    evaluated = run.run(
        "evaluate", {"checkpoint": checkpoint, "split": split}, evaluate, after=trained_by
    )

    # 4. register, 5. promote
    registered = run.run(
        "register",
        {"name": plan.name},
        lambda: retrain_steps.register(plan, trained, evaluated),
        after="evaluate",
    )
    version = registered["version"]
    promoted = run.run(
        "promote",
        {"name": plan.name, "metric": plan.metric, "min_improvement": plan.min_improvement},
        lambda: retrain_steps.promote(plan, version, split),
        after="register",
    )
    return {
        "split": split,
        "metrics": evaluated["metrics"],
        "version": version,
        "promoted": promoted["promoted"],
    }


def retrain(cfg: RetrainConfig, *, fault_hook: dict[str, Any] | None = None) -> RetrainSummary:
    """Run (or continue) the workflow; returns what this invocation did.

    `fault_hook` is passed to training, for the fault-tolerance tests (see
    `pipelines.train.faults`).
    """
    started = time.monotonic()
    plan, record, listing = _open(cfg)
    run = _Steps(plan.run_dir, record)
    try:
        outcome = _run_steps(cfg, plan, run, listing, fault_hook)
    except BaseException as err:
        record.close("failed", f"retrain {plan.run_name}: step {run.current} failed: {_brief(err)}")
        raise
    summary = RetrainSummary(
        run_name=plan.run_name,
        run_folder=plan.run_dir.url,
        parent_run_id=plan.parent_run_id,
        steps=dict(record.invocation["steps"]),
        split=outcome["split"],
        metrics=outcome["metrics"],
        version=outcome["version"],
        promoted=outcome["promoted"],
        champion=current_champion(MlflowClient(plan.common.tracking_uri), plan.name),
        seconds=time.monotonic() - started,
        name=plan.name,
    )
    record.close("done", summary.line)
    return summary


def _brief(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Training's --data is what retrain's prepare step makes from `source`.
    add_options(parser, *OPTION_GROUPS, exclude=frozenset({"data"}))


def run(args: argparse.Namespace, *, fault_hook: dict[str, Any] | None = None) -> int:
    cfg = load_config(args)
    try:
        summary = retrain(cfg, fault_hook=fault_hook)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as err:
        print(
            f"pix2pix retrain: {type(err).__name__}: {err}\n"
            "pix2pix retrain: the failed step's step.json holds the traceback; rerun the "
            "same command to continue from that step",
            file=sys.stderr,
        )
        return 1
    print(summary.line, flush=True)
    return 0
