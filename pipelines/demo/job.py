"""`pix2pix demo` (what `make demo` runs): the whole workflow on a laptop, no data, no network.

    1. data       label-like renderings -> photos, cut from scikit-image's sample photographs
    2. retrain    prepare -> train -> evaluate -> register -> promote, on a local Ray with
                  MLflow on SQLite and storage on local disk (`pix2pix retrain`)
    3. translate  the test inputs with the champion (`pix2pix translate`)
    4. report     DIR/report.html and DIR/grid.png: input | output | target, with the metrics

Everything lands in one folder (default `./demo`). Running the demo again reuses its data,
so the retrain run finds every step done and skips it; `--fresh` starts over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from pipelines.common.errors import UserError
from pipelines.common.ray_runtime import init_ray
from pipelines.common.storage import Location
from pipelines.common.tracking import setup_mlflow
from pipelines.config.fields import option
from pipelines.config.loader import add_options, load_options
from pipelines.demo.report import ReportRow, write_report
from pipelines.demo.sample_data import make_pairs, write_dataset
from pipelines.retrain import RetrainSummary, load_config, retrain
from pipelines.translate import TranslateOptions, translate

MARKER = ".pix2pix-demo"  # a folder with this file is the demo's own, safe to clear
EXPERIMENT, MODEL_NAME, RUN_NAME = "pix2pix-demo", "pix2pix-demo", "demo"

# The demo's retrain config (written to DIR/retrain.yaml). Sized for a few minutes on two
# CPU cores: 64 px images, a U-Net of depth 6 (64 -> 1 px at the bottleneck) and a
# narrow network, instance norm (batch norm with batches of one adds noise that a short
# run does not average out), and enough epochs for the outputs to look like photos.
SETTINGS: dict[str, Any] = {
    "load_size": 72,
    "crop_size": 64,
    "num_downs": 6,
    "ngf": 32,
    "ndf": 32,
    "norm": "instance",
    "n_epochs": 6,
    "n_epochs_decay": 6,
    "batch_size": 4,
    "lr": 0.0002,
    "lambda_L1": 100.0,
    "eval": True,
    "metric": "l1",
    "num_workers": 1,
    "cpus_per_worker": 1,
    "keep_best": 1,
    "grid_size": 4,
}


# Pairs are crops of the sample photos (most of them 300 to 512 px high): a larger side would
# mostly be upsampled, at a cost in memory and minutes.
MAX_SIZE = 512


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """The demo: where it writes, how much data."""

    output_dir: str = option("demo", "folder for the data, runs, MLflow store and report")
    num_pairs: int = option(160, "pairs made from the sample photos (1 in 10 val, 1 in 10 test)")
    size: int = option(64, "side of the sample pairs in pixels (32 to 512)")
    fresh: bool = option(False, "delete the demo folder's earlier data, runs and models first")

    def __post_init__(self) -> None:
        if self.num_pairs < 10:
            raise ValueError(f"num_pairs must be at least 10, got {self.num_pairs!r}")
        if not 32 <= self.size <= MAX_SIZE:
            raise ValueError(
                f"size must be from 32 to {MAX_SIZE} (the sample photos' resolution), "
                f"got {self.size!r}"
            )


def _folder(opts: DemoOptions) -> Path:
    root = Path(opts.output_dir).resolve()
    if root.exists() and not root.is_dir():
        raise UserError(f"--output_dir {root} is a file; choose a folder")
    if opts.fresh and root.exists():
        if not (root / MARKER).exists():
            raise UserError(f"{root} is not a demo folder (no {MARKER}); not deleting it")
        shutil.rmtree(root)
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise UserError(f"{root} exists and is not a demo folder; choose another --output_dir")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by `pix2pix demo`; `pix2pix demo --fresh` clears it\n")
    return root


# --------------------------------------------------------------------------------------
# 1. data
# --------------------------------------------------------------------------------------


def make_data(root: Path, num_pairs: int, size: int) -> Path:
    """Sample pairs in the aligned layout (A|B side by side) with train, val and test;
    made once, so a second demo sees unchanged data."""

    src = root / "data" / "photos"
    done = src / ".complete"
    if done.exists():
        return src
    if src.exists():
        shutil.rmtree(src)  # a half-written set from an interrupted demo
    print(f"making {num_pairs} pairs of {size} px from scikit-image's sample photos", flush=True)
    pairs = make_pairs(num_pairs, size=size, seed=0, kind="labels")
    held_out = max(1, num_pairs // 10)
    splits = {
        "test": pairs[:held_out],
        "val": pairs[held_out : 2 * held_out],
        "train": pairs[2 * held_out :],
    }
    write_dataset(splits, Location.parse(str(src)), layout="aligned", fmt="png")
    done.write_text("")
    return src


# --------------------------------------------------------------------------------------
# 2. retrain
# --------------------------------------------------------------------------------------


def _tracking(root: Path) -> str:
    """SQLite MLflow in the demo folder, its artifacts beside it (not in the working dir)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    setup_mlflow(uri, EXPERIMENT)
    return uri


def write_config(root: Path, source: Path, tracking_uri: str) -> Path:
    values = {
        "source": str(source),
        "storage_path": str(root / "runs"),
        "run_name": RUN_NAME,
        "experiment": EXPERIMENT,
        "tracking_uri": tracking_uri,
        "name": MODEL_NAME,
        **SETTINGS,
    }
    path = root / "retrain.yaml"
    header = "# The demo's retrain config: `pix2pix retrain --config` this file to run it again.\n"
    path.write_text(header + yaml.safe_dump(values, sort_keys=False))
    return path


def run_retrain(config: Path) -> RetrainSummary:
    cfg = load_config(argparse.Namespace(config=str(config)))
    summary = retrain(cfg)
    print(summary.line, flush=True)
    return summary


# --------------------------------------------------------------------------------------
# 3. translate, 4. report
# --------------------------------------------------------------------------------------


def translate_test(root: Path, source: Path, tracking_uri: str, version: str) -> Path:
    """The test inputs (the A half of each aligned pair) through the champion."""
    out = root / "translated" / f"v{version}"
    opts = TranslateOptions(
        model=f"models:/{MODEL_NAME}/{version}",
        input=str(source / "test"),
        output=str(out),
        input_side="A",
    )
    summary = translate(opts, tracking_uri=tracking_uri)
    print(summary.line(), flush=True)
    if summary.failed:
        raise RuntimeError(f"translating the test split failed for {summary.failed} images")
    return out


def report_rows(source: Path, translated: Path) -> list:
    rows = []
    for path in sorted((source / "test").glob("*.png")):
        pair = np.asarray(Image.open(path).convert("RGB"))
        half = pair.shape[1] // 2
        output = translated / f"{path.stem}.png"
        if not output.exists():
            raise RuntimeError(f"no translation of {path} in {translated}")
        rows.append(
            ReportRow(
                key=path.stem,
                input=pair[:, :half],
                output=np.asarray(Image.open(output).convert("RGB")),
                target=pair[:, half:],
            )
        )
    return rows


def write_demo_report(
    root: Path, rows: list, summary: RetrainSummary, opts: DemoOptions, tracking_uri: str
) -> tuple[Path, Path]:
    train = _step_result(summary.run_folder, "train")
    metrics = {f"{summary.split} {k.upper()}": v for k, v in summary.metrics.items()}
    details = {
        "data": f"{opts.num_pairs} pairs of {opts.size} px: label-like rendering -> photo, "
        "random crops of scikit-image's 7 sample photographs (test crops come from the same "
        "photographs as training ones: this shows the workflow, not generalisation)",
        "model": ", ".join(f"{k} {SETTINGS[k]}" for k in ("num_downs", "ngf", "ndf", "norm")),
        "training": f"{train.get('epochs', '?')} epochs, batch {SETTINGS['batch_size']}, "
        f"{SETTINGS['crop_size']} px crops from {SETTINGS['load_size']} px",
        "registered": f"models:/{MODEL_NAME}/{summary.version} (champion: v{summary.champion})",
        "retrain": summary.line,
        "run folder": summary.run_folder,
        "MLflow": tracking_uri,
    }
    commands = [
        f"mlflow ui --backend-store-uri {tracking_uri}   # then open http://127.0.0.1:5000",
        f"pix2pix retrain --config {root / 'retrain.yaml'}   # again: every step is skipped",
    ]
    return write_report(
        root,
        rows,
        title=f"pix2pix demo: {MODEL_NAME} v{summary.champion} on the test split",
        metrics=metrics,
        details=details,
        commands=commands,
    )


def _step_result(run_folder: str, step: str) -> dict[str, Any]:
    path = Path(run_folder) / step / "step.json"
    return json.loads(path.read_text()).get("result") or {} if path.exists() else {}


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, DemoOptions)


def demo(opts: DemoOptions) -> Path:
    """Make the data, run the retrain workflow, translate the test split with the champion
    and write the report; returns the report's path."""
    started = time.monotonic()
    root = _folder(opts)
    source = make_data(root, opts.num_pairs, opts.size)
    tracking_uri = _tracking(root)
    config = write_config(root, source, tracking_uri)
    init_ray(None)
    summary = run_retrain(config)
    if not summary.champion:
        raise RuntimeError(f"no champion in the registry after the run: {summary.line}")
    translated = translate_test(root, source, tracking_uri, summary.champion)
    html_path, grid_path = write_demo_report(
        root, report_rows(source, translated), summary, opts, tracking_uri
    )
    print(
        f"\npix2pix demo: done in {time.monotonic() - started:.0f} s\n"
        f"  report: {html_path}\n"
        f"  grid:   {grid_path}\n"
        f"  model:  models:/{MODEL_NAME}@champion (v{summary.champion}) in {tracking_uri}\n"
        f"  MLflow UI: mlflow ui --backend-store-uri {tracking_uri}\n"
        f"             then open http://127.0.0.1:5000 (experiment {EXPERIMENT!r})",
        flush=True,
    )
    return html_path


def run(args: argparse.Namespace) -> int:
    (opts,) = load_options(args, DemoOptions)
    demo(opts)
    return 0
