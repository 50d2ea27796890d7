"""Validation does not depend on the batch size: one small real-photo set, trained with
--batch_size 1 and with 4, and each run's best checkpoint validated and evaluated at batch
sizes 1, 4 and 8.

    python benchmarks/bench_validation.py [--pairs 40] [--size 64] [--epochs 2]

Prints one table per training run: the metrics of its best checkpoint at each batch size,
the largest difference from batch size 1 (float rounding: about 1e-6), and the images per
second of validation (as after each epoch, on the encoded pairs the worker holds) and of
evaluate (reading the prepared split), each the best of --repeats calls.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from machine import machine  # benchmarks/machine.py, beside this script

from pipelines.common.checkpoints import read_url
from pipelines.common.dataset import read_encoded_pairs
from pipelines.common.models import load_generator_from_uri
from pipelines.common.ray_runtime import init_ray
from pipelines.common.storage import Location
from pipelines.config.groups import CommonOptions
from pipelines.demo.sample_data import make_pairs, write_dataset
from pipelines.prepare import PrepareOptions, prepare
from pipelines.registry import evaluate
from pipelines.train import TrainConfig, train
from pipelines.train.validation import validate
from pix2pix_core import load_checkpoint

BATCH_SIZES = (1, 4, 8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="pairs made from the sample photos")
    parser.add_argument("--size", type=int, default=64, help="crop size (load: +8)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls; the best counts")
    args = parser.parse_args(argv)
    logging.getLogger("ray").setLevel(logging.WARNING)
    print(f"bench_validation: {machine()}")
    with tempfile.TemporaryDirectory() as root:
        init_ray()
        pairs = make_pairs(args.pairs, size=args.size + 8, seed=0)
        held_out = max(4, args.pairs // 5)
        src = write_dataset(
            {"train": pairs[held_out:], "val": pairs[:held_out]}, Location.parse(f"{root}/src")
        )
        data = Location.parse(f"{root}/prepared")
        prepare(src, data, PrepareOptions(load_size=args.size + 8))
        val = read_encoded_pairs(data, "val")
        for train_batch in (1, 4):
            cfg = TrainConfig().replace(
                data=data.url,
                num_downs=6,  # 64 px: one level with the paper's dropout
                ngf=16,
                ndf=16,
                crop_size=args.size,
                batch_size=train_batch,
                n_epochs=args.epochs,
                n_epochs_decay=0,
                keep_best=1,
                grid_size=0,
            )
            common = CommonOptions(
                storage_path=f"{root}/runs",
                run_name=f"batch{train_batch}",
                tracking_uri=f"sqlite:///{root}/mlflow.db",
                experiment="bench-validation",
            )
            result = train(cfg, common)
            model, _ = load_checkpoint(read_url(result.best_checkpoint))
            loaded = load_generator_from_uri(result.best_checkpoint)
            rows = []
            for batch in BATCH_SIZES:
                (values, _), validate_s = _best_of(
                    args.repeats,
                    validate,
                    model,
                    val,
                    crop_size=args.size,
                    batch_size=batch,
                    eval_mode=False,
                    rank=0,
                    world=1,
                    grid_size=0,
                )
                evaluated, evaluate_s = _best_of(
                    args.repeats, evaluate, loaded, data, "val", batch_size=batch
                )
                rates = (len(val) / validate_s, len(val) / evaluate_s)
                rows.append((batch, values, evaluated, rates))
            _print(train_batch, result.best_metrics, rows)
    return 0


def _best_of(repeats: int, call, *args, **kwargs):
    """(call(*args, **kwargs)'s result, its fastest wall time in seconds of `repeats`)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call(*args, **kwargs)
        best = min(best, time.perf_counter() - started)
    return result, best


def _print(train_batch: int, recorded: dict, rows: list) -> None:
    print(
        f"\ntrained at --batch_size {train_batch}; its best checkpoint at {len(rows)} batch sizes"
    )
    print(
        "| batch size | val_L1 | val_PSNR | val_SSIM | evaluate l1 | psnr | ssim "
        "| validation img/s | evaluate img/s |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch, values, evaluated, rates in rows:
        cells = [values["val_L1"], values["val_PSNR"], values["val_SSIM"]]
        cells += [evaluated["l1"], evaluated["psnr"], evaluated["ssim"]]
        speeds = " | ".join(f"{r:.1f}" for r in rates)
        print(f"| {batch} | " + " | ".join(f"{c:.6f}" for c in cells) + f" | {speeds} |")
    base = rows[0]
    spread = max(
        abs(v[k] - base[1][k]) for _, v, _, _ in rows for k in ("val_L1", "val_PSNR", "val_SSIM")
    )
    across = max(abs(e[k] - base[2][k]) for _, _, e, _ in rows for k in ("l1", "psnr", "ssim"))
    gap = abs(base[1]["val_L1"] - base[2]["l1"])
    print(
        f"largest difference from batch size 1: validation {spread:.2e}, evaluate {across:.2e};"
        f" validation L1 vs evaluate L1 {gap:.2e}; recorded in training {recorded['val_L1']:.6f}"
    )


if __name__ == "__main__":
    sys.exit(main())
