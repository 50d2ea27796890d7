"""Training throughput: `pix2pix train` end to end vs the bare training step.

The paper's model (unet_256 generator, 70x70 PatchGAN, batch norm) on 256 x 256 crops,
at batch 1 and 4, on this machine:

- bare step: `Pix2Pix.train_step` in this process on tensors already in memory, with the
  core's defaults for the device (the reference for what training can reach here);
- train, in loop: `pix2pix train` with one Ray Train worker, images per second inside its
  last epoch as the worker measures it (Ray Data reading and decoding, jitter, the step);
- train, wall: images trained / wall time of the whole `train()` call (Ray Train start,
  validation, checkpoint writes to local disk, MLflow), for a run of a few images only,
  so it shows the fixed costs rather than a long run's rate.

    python benchmarks/bench_train.py            # a few minutes on 2 CPU cores
    python benchmarks/bench_train.py --images 16 --steps 10
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines.common.storage import Location
from pipelines.config.groups import CommonOptions
from pipelines.train import TrainConfig, train
from pix2pix_core import Pix2Pix
from pix2pix_core.memory import retain_freed_memory

CROP, LOAD = 256, 286


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
    a = torch.rand(batch, 3, CROP, CROP) * 2 - 1
    b = torch.rand(batch, 3, CROP, CROP) * 2 - 1
    net.train_step(a, b)
    started = time.perf_counter()
    for _ in range(steps):
        net.train_step(a, b)
    return steps * batch / (time.perf_counter() - started)


def prepare_data(root: str, images: int) -> Location:
    from pipelines.demo.sample_data import make_pairs, write_dataset
    from pipelines.prepare import PrepareOptions, prepare

    pairs = make_pairs(images + 2, size=LOAD, seed=0)
    src = Location.parse(os.path.join(root, "src"))
    write_dataset({"train": pairs[:images], "val": pairs[images:]}, src)
    dst = Location.parse(os.path.join(root, "prepared"))
    prepare(src, dst, PrepareOptions(load_size=LOAD))
    return dst


def end_to_end(cfg: TrainConfig, data: Location, root: str, batch: int) -> tuple[float, float]:
    """(in-loop images/s of the last epoch, images / wall seconds) of a 2-epoch run."""
    cfg = cfg.replace(data=data.url, batch_size=batch, crop_size=CROP, keep_best=1, grid_size=1)
    common = CommonOptions(
        storage_path=os.path.join(root, "runs"),
        run_name=f"bench-batch{batch}",
        tracking_uri=f"sqlite:///{root}/mlflow.db",
        experiment="bench-train",
    )
    started = time.perf_counter()
    result = train(cfg, common)
    wall = time.perf_counter() - started
    images = result.metrics["step"] * batch
    return result.metrics["images_per_s"], images / wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="train pairs (per epoch)")
    parser.add_argument("--steps", type=int, default=4, help="timed bare steps per batch size")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)

    from pipelines.common.ray_runtime import init_ray

    logging.getLogger("ray").setLevel(logging.WARNING)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    # Two epochs: the second one's in-loop rate is past the first step's warm-up.
    cfg = TrainConfig().replace(n_epochs=1, n_epochs_decay=1)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        init_ray()
        data = prepare_data(os.path.join(root, "data"), args.images)
        for batch in args.batch_sizes:
            bare = bare_step(cfg, batch, args.steps)
            in_loop, wall = end_to_end(cfg, data, root, batch)
            rows.append((batch, bare, in_loop, wall))
    cores = os.cpu_count()
    print(f"\ntraining throughput, unet_256 + 70x70 PatchGAN, {CROP}x{CROP}, {cores} CPU cores")
    print("| batch | bare step img/s | train in loop img/s | ratio | train wall img/s |")
    print("| --- | --- | --- | --- | --- |")
    for batch, bare, in_loop, wall in rows:
        print(f"| {batch} | {bare:.2f} | {in_loop:.2f} | {in_loop / bare:.2f} | {wall:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
