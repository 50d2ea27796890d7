"""Ray's floor for `pix2pix translate`: the same Ray Data shape with nothing to do.

Starts a local Ray as translate does (pipelines.common.ray_runtime.init_ray), runs a few rows
through a pool of ACTORS actors that import torch (as the model actors do) and pass
the rows on, and shuts Ray down. bench_translate.py times it in a fresh process: what
no work inside the pipeline can save.

    python benchmarks/ray_floor.py --actors 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray
import ray.data

from pipelines.common.ray_runtime import init_ray


class PassOn:
    def __init__(self) -> None:
        import torch  # noqa: F401  (the model actors' first cost)

    def __call__(self, batch: dict) -> dict:
        return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args()
    init_ray(training=False)
    rows = ray.data.from_items([{"i": i} for i in range(8 * args.actors)])
    rows = rows.repartition(args.actors).map_batches(
        PassOn, batch_size=8, num_cpus=1, compute=ray.data.ActorPoolStrategy(size=args.actors)
    )
    passed = sum(len(batch["i"]) for batch in rows.iter_batches(batch_size=None))
    assert passed == 8 * args.actors, passed
    ray.shutdown()


if __name__ == "__main__":
    main()
