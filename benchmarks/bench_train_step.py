"""Training-step throughput: ``Pix2Pix.train_step`` as the training workers run it, against
the same model in PyTorch's default layout and settings.

The paper's configuration (unet_256 generator, 70x70 PatchGAN, batch norm, 256 x 256 pairs)
at batch 1 and 4, same machine, same run. Every variant runs the identical algorithm; only
the performance switches differ:

- baseline:      channels_last=False, fused_adam=False, autocast=False (NCHW, for-loop Adam,
                 fp32), glibc's default malloc;
- fp32:          the optimised settings in fp32 (what a CPU without native bf16 runs);
- channels_last: the optimised settings plus the channels_last memory format;
- optimised:     what `pix2pix train` runs: the auto settings for the device (CPU: fused
                 Adam, and bf16 autocast where the CPU computes bf16 natively; CUDA:
                 channels_last, fused Adam, bf16 autocast) and freed memory kept for reuse
                 (pix2pix_core.memory), plus ``torch.compile`` with ``--compile``.

The malloc setting is process-wide, so each variant runs in a process of its own; the
processes take turns over ``--rounds`` rounds, so a machine shared with other work slows
all of them alike. Rates come from the median step. Target on a 2-core CPU: optimised
>= 1.5x baseline.

    python benchmarks/bench_train_step.py                 # batch 1 and 4
    python benchmarks/bench_train_step.py --steps 3 --warmup 1 --rounds 1 --batch_sizes 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import machine  # benchmarks/machine.py, beside this script

from pix2pix_core import DiscriminatorConfig, GeneratorConfig, Pix2Pix
from pix2pix_core.memory import retain_freed_memory

SIZE = 256
BASELINE = {"channels_last": False, "fused_adam": False, "autocast": False}
VARIANTS = {  # name -> (Pix2Pix switches, keep freed memory)
    "baseline": (BASELINE, False),
    "fp32": ({"autocast": False}, True),
    "channels_last": ({"channels_last": True}, True),
    "optimised": ({}, True),
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_variant(name: str, batch: int, steps: int, warmup: int, device: str, compile: bool):
    """In this process: build the variant, time its steps; the settings and step times."""
    switches, retain = VARIANTS[name]
    if retain:
        retain_freed_memory()
    model = Pix2Pix(
        GeneratorConfig(),
        DiscriminatorConfig(),
        device=device,
        seed=0,
        **switches,
        **({"compile": True} if compile and name == "optimised" else {}),
    )
    g = torch.Generator().manual_seed(batch)
    a = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1
    b = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1
    times = []
    for step in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        model.train_step(a, b)  # returns Python floats: the step has finished
        sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    settings = (
        f"channels_last={model.channels_last}, fused_adam={model.fused_adam}, "
        f"autocast={model.autocast}, compile={model.training_config.compile}, "
        f"freed memory kept={retain}"
    )
    return {"settings": settings, "times": times}


def in_child(args: argparse.Namespace, name: str, batch: int) -> dict:
    command = [
        sys.executable, __file__, "--child", name, "--batch_sizes", str(batch),
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
    ] + (["--compile"] if args.compile else [])  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} at batch {batch} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each variant")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the optimised one")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_variant(
            args.child, args.batch_sizes[0], args.steps, args.warmup, args.device, args.compile
        )
        print(json.dumps(result))
        return 0

    names = ["baseline", *(v for v in args.variants if v != "baseline")]
    print(f"machine: {machine()}")
    print(
        f"{args.steps} timed steps after {args.warmup} warm-up, {args.rounds} rounds of one "
        "process per variant, median step, images/s:"
    )
    settings: dict[str, str] = {}
    table = []
    for batch in args.batch_sizes:
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                result = in_child(args, name, batch)
                settings[name] = result["settings"]
                times[name] += result["times"]
        table.append((batch, {name: batch / statistics.median(t) for name, t in times.items()}))
    for name in names:
        print(f"  {name}: {settings[name]}")
    print(f"{'batch':>5}" + "".join(f"  {name:>22}" for name in names))
    for batch, rate in table:
        cells = [f"{rate['baseline']:>22.3f}"] + [
            f"{rate[n]:>12.3f} ({rate[n] / rate['baseline']:.2f}x)" for n in names[1:]
        ]
        print(f"{batch:>5}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
