"""Training throughput: `pix2pix train` end to end vs the bare training step.

The paper's model by default (unet_256 generator, 70x70 PatchGAN, batch norm) on 256 x 256
crops, at batch 1 and 4, on this machine:

- bare step: `Pix2Pix.train_step` in this process on tensors already in memory, with the
  core's defaults for the device (the reference for what training can reach here);
- train, in loop: `pix2pix train` with one Ray Train worker, images per second inside its
  last epoch as the worker measures it (Ray Data reading and decoding, jitter, the step);
- train, wall: images trained / wall time of the whole `train()` call (Ray Train start,
  validation, checkpoint writes, MLflow); and that wall time against the same images at
  the bare step's rate (the whole-command overhead).

With `--s3` the prepared data and the run folder are in a SeaweedFS store on loopback
(`weed mini`, as benchmarks/bench_scale.py starts it), sharing the cores like a local
object store would (`--store_nice 19`: yielding them, as a store on other machines takes
none); else on local disk.

    python benchmarks/bench_train.py            # a few minutes on 2 CPU cores
    python benchmarks/bench_train.py --images 16 --steps 10
    python benchmarks/bench_train.py --s3 --netG unet_128 --crop_size 128 --images 100 \
        --epochs 3 --batch_sizes 1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_scale import BUCKET, start_store  # benchmarks/bench_scale.py, beside this script

from pipelines.common.storage import Location
from pipelines.config.groups import CommonOptions
from pipelines.train import TrainConfig, train
from pix2pix_core import Pix2Pix
from pix2pix_core.memory import retain_freed_memory


def load_size(crop: int) -> int:
    """The paper's 286 -> 256 jitter at another crop size (142 for 128)."""
    return round(crop * 286 / 256)


def bare_step(cfg: TrainConfig, batch: int, steps: int) -> float:
    """Images/s of `train_step` on random 256 x 256 batches (after one warm-up step), with
    freed memory kept as in the training workers."""
    retain_freed_memory()
    net = Pix2Pix(
        cfg.generator_config(),
        cfg.discriminator_config(),
        "cpu",
        seed=0,
        training=cfg.training_config(),
    )
    crop = cfg.train.crop_size
    a = torch.rand(batch, 3, crop, crop) * 2 - 1
    b = torch.rand(batch, 3, crop, crop) * 2 - 1
    net.train_step(a, b)
    started = time.perf_counter()
    for _ in range(steps):
        net.train_step(a, b)
    return steps * batch / (time.perf_counter() - started)


def prepare_data(root: str, images: int, load: int) -> Location:
    """`images` train pairs and 2 val pairs, prepared at `load` under `root` (a URL)."""
    from pipelines.demo.sample_data import make_pairs, write_dataset
    from pipelines.prepare import PrepareOptions, prepare

    pairs = make_pairs(images + 2, size=load, seed=0)
    src = Location.parse(f"{root}/src")
    write_dataset({"train": pairs[:images], "val": pairs[images:]}, src)
    dst = Location.parse(f"{root}/prepared")
    prepare(src, dst, PrepareOptions(load_size=load))
    return dst


def end_to_end(
    cfg: TrainConfig, data: Location, runs: str, tracking: str, batch: int
) -> tuple[float, float, int, float]:
    """(in-loop images/s of the last epoch, images / wall seconds, images, wall seconds)."""
    cfg = cfg.replace(data=data.url, batch_size=batch, keep_best=1, grid_size=1)
    common = CommonOptions(
        storage_path=runs,
        run_name=f"bench-batch{batch}",
        tracking_uri=tracking,
        experiment="bench-train",
    )
    started = time.perf_counter()
    result = train(cfg, common)
    wall = time.perf_counter() - started
    images = result.metrics["step"] * batch
    return result.metrics["images_per_s"], images / wall, images, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="train pairs (per epoch)")
    parser.add_argument("--steps", type=int, default=4, help="timed bare steps per batch size")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--netG", default="unet_256", help="the generator (as --netG)")
    parser.add_argument("--crop_size", type=int, default=256, help="as --crop_size")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (the last one is timed)")
    parser.add_argument("--s3", action="store_true", help="data and runs in a local S3 store")
    parser.add_argument(
        "--store_nice",
        type=int,
        default=0,
        help="run the S3 store at this nice value (19: as if on other machines)",
    )
    args = parser.parse_args(argv)

    from pipelines.common.ray_runtime import init_ray

    logging.getLogger("ray").setLevel(logging.WARNING)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    # The last epoch's in-loop rate is past the first step's warm-up.
    cfg = TrainConfig().replace(
        netG=args.netG, crop_size=args.crop_size, n_epochs=args.epochs - 1, n_epochs_decay=1
    )
    rows = []
    with tempfile.TemporaryDirectory() as root:
        store = None
        if args.s3:
            os.makedirs(os.path.join(root, "weed"))
            store = start_store(Path(root) / "weed", nice=args.store_nice)
            where = f"s3://{BUCKET}"
        else:
            where = root
        try:
            init_ray()
            data = prepare_data(f"{where}/data", args.images, load_size(args.crop_size))
            for batch in args.batch_sizes:
                bare = bare_step(cfg, batch, args.steps)
                tracking = f"sqlite:///{root}/mlflow.db"
                in_loop, wall_rate, images, wall = end_to_end(
                    cfg, data, f"{where}/runs", tracking, batch
                )
                rows.append((batch, bare, in_loop, wall_rate, wall / (images / bare)))
        finally:
            if store is not None:
                store.terminate()
                store.wait(timeout=60)  # before its folder is deleted
    cores = os.cpu_count()
    place = "a local S3 store (SeaweedFS)" if args.s3 else "local disk"
    if args.s3 and args.store_nice:
        place += f" at nice {args.store_nice}"
    print(
        f"\ntraining throughput, {args.netG} + 70x70 PatchGAN, {args.crop_size}x{args.crop_size}"
        f", {args.images} pairs x {args.epochs} epochs on {place}, {cores} CPU cores"
    )
    print(
        "| batch | bare step img/s | train in loop img/s | ratio | train wall img/s "
        "| wall / images at the bare rate |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for batch, bare, in_loop, wall_rate, overhead in rows:
        print(
            f"| {batch} | {bare:.2f} | {in_loop:.2f} | {in_loop / bare:.2f} | {wall_rate:.3f} "
            f"| {overhead:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
