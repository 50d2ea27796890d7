"""Training-step throughput: ``Pix2Pix.train_step`` with the optimised settings against the
same model in PyTorch's default layout and settings.

The paper's configuration (unet_256 generator, 70x70 PatchGAN, batch norm, 256 x 256 pairs)
at batch 1 and 4, same process, same machine. Every variant runs the identical algorithm;
only the performance switches differ:

- baseline:      channels_last=False, fused_adam=False, autocast=False (NCHW, for-loop Adam);
- channels_last: baseline + channels_last memory format + fused Adam;
- optimised:     the auto settings for the device (CPU: fused Adam; CUDA: channels_last,
                 fused Adam, bf16 autocast), plus ``torch.compile`` with ``--compile``.

Steps of the variants alternate, so a machine shared with other work slows all of them
alike; rates come from the median step. Target on a 2-core CPU: optimised >= 1.5x baseline.

    python benchmarks/bench_train_step.py                 # batch 1 and 4
    python benchmarks/bench_train_step.py --steps 3 --warmup 1 --batch_sizes 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import machine  # benchmarks/machine.py, beside this script

from pix2pix_core import DiscriminatorConfig, GeneratorConfig, Pix2Pix

SIZE = 256
BASELINE = {"channels_last": False, "fused_adam": False, "autocast": False}
VARIANTS = {
    "baseline": BASELINE,
    "channels_last": {**BASELINE, "channels_last": True, "fused_adam": True},
    "optimised": {},
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(
    models: dict[str, Pix2Pix], batch: int, steps: int, warmup: int, device: str
) -> dict[str, list[float]]:
    g = torch.Generator().manual_seed(batch)
    a = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1
    b = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(warmup + steps):
        for name, model in models.items():
            sync(device)
            start = time.perf_counter()
            model.train_step(a, b)  # returns Python floats: the step has finished
            sync(device)
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant and batch")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the optimised one")
    args = parser.parse_args()
    names = ["baseline", *(v for v in args.variants if v != "baseline")]

    models = {
        name: Pix2Pix(
            GeneratorConfig(),
            DiscriminatorConfig(),
            device=args.device,
            seed=0,
            **VARIANTS[name],
            **({"compile": True} if args.compile and name == "optimised" else {}),
        )
        for name in names
    }
    print(f"machine: {machine()}")
    for name, model in models.items():
        print(
            f"  {name}: channels_last={model.channels_last}, fused_adam={model.fused_adam}, "
            f"autocast={model.autocast}, compile={model.training_config.compile}"
        )
    print(f"{args.steps} timed steps after {args.warmup} warm-up, median step, images/s:")
    print(f"{'batch':>5}" + "".join(f"  {name:>22}" for name in names))
    for batch in args.batch_sizes:
        times = measure(models, batch, args.steps, args.warmup, args.device)
        rate = {name: batch / statistics.median(t) for name, t in times.items()}
        cells = [f"{rate['baseline']:>22.3f}"] + [
            f"{rate[n]:>12.3f} ({rate[n] / rate['baseline']:.2f}x)" for n in names[1:]
        ]
        print(f"{batch:>5}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
