"""Training-step throughput: ``Pix2Pix.train_step`` as the training workers run it, against
the fastest plain PyTorch step on the same machine, in the same run.

The paper's configuration (unet_256 generator, 70x70 PatchGAN, batch norm, 256 x 256 pairs,
vanilla GAN + 100 x L1, Adam 2e-4 / 0.5) at batch 1 and 4. Variants:

- plain:         the official `optimize_parameters` written in plain PyTorch (G forward; D
                 on the fake and real pairs, loss halved, step; G against the frozen D plus
                 L1, step) with the fastest settings PyTorch gives here: bf16 autocast where
                 the device computes bf16 natively, fused Adam, denormals flushed; in
                 channels_last and in NCHW (the faster of the two is the reference);
- plain default: the same step in PyTorch's defaults (NCHW, fp32, for-loop Adam): what a
                 script would do;
- ours:          what `pix2pix train` runs: `Pix2Pix.train_step` with the auto settings for
                 the device and freed memory kept for reuse (pix2pix_core.memory), plus
                 ``torch.compile`` with ``--compile``.

Each variant runs in a process of its own (the malloc setting is process-wide); the
processes take turns over ``--rounds`` rounds, so a machine shared with other work slows
all of them alike. Rates come from the median step; every ratio is against the reference.

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
from pix2pix_core.networks import build_discriminator, build_generator, init_weights
from pix2pix_core.precision import native_bf16

SIZE = 256
VARIANTS = ("plain_channels_last", "plain_nchw", "plain_default", "ours")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_step(device: str, *, fast: bool, channels_last: bool):
    """The official pix2pix step in plain PyTorch: a function of (A, B)."""
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    netG = init_weights(build_generator(GeneratorConfig())).to(device, memory_format=layout)
    netD = init_weights(build_discriminator(DiscriminatorConfig())).to(device, memory_format=layout)
    adam = {"lr": 2e-4, "betas": (0.5, 0.999), "fused": fast}
    opt_g = torch.optim.Adam(netG.parameters(), **adam)
    opt_d = torch.optim.Adam(netD.parameters(), **adam)
    gan, l1 = torch.nn.BCEWithLogitsLoss(), torch.nn.L1Loss()
    bf16 = fast and native_bf16(device)
    if fast:
        torch.set_flush_denormal(True)

    def amp():
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)

    def step(a: torch.Tensor, b: torch.Tensor) -> float:
        a = a.to(device, memory_format=layout)
        b = b.to(device, memory_format=layout)
        with amp():
            fake = netG(a)
        netD.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        with amp():
            pred_fake = netD(torch.cat((a, fake.detach()), 1)).float()
            pred_real = netD(torch.cat((a, b), 1)).float()
        loss_d = 0.5 * (
            gan(pred_fake, torch.zeros_like(pred_fake)) + gan(pred_real, torch.ones_like(pred_real))
        )
        loss_d.backward()
        opt_d.step()
        netD.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        with amp():
            pred = netD(torch.cat((a, fake), 1)).float()
        loss_g = gan(pred, torch.ones_like(pred)) + 100.0 * l1(fake.float(), b)
        loss_g.backward()
        opt_g.step()
        return loss_g.item()  # the step has finished

    return step


def run_variant(name: str, batch: int, steps: int, warmup: int, device: str, compile: bool):
    """In this process: build the variant, time its steps; the settings and step times."""
    if name == "ours":
        retain_freed_memory()
        model = Pix2Pix(
            GeneratorConfig(), DiscriminatorConfig(), device=device, seed=0, compile=compile
        )
        step = model.train_step
        settings = (
            f"channels_last={model.channels_last}, fused_adam={model.fused_adam}, "
            f"autocast={model.autocast}, compile={model.training_config.compile}, "
            "freed memory kept"
        )
    else:
        fast = name != "plain_default"
        channels_last = name == "plain_channels_last"
        step = plain_step(device, fast=fast, channels_last=channels_last)
        bf16 = fast and native_bf16(device)
        settings = (
            f"channels_last={channels_last}, fused_adam={fast}, autocast={bf16}, "
            f"denormals flushed={fast}"
        )
    g = torch.Generator().manual_seed(batch)
    a = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1
    b = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1
    times = []
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        step(a, b)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
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
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the optimised one")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_variant(
            args.child, args.batch_sizes[0], args.steps, args.warmup, args.device, args.compile
        )
        print(json.dumps(result))
        return 0

    names = list(args.variants)
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
    plains = [n for n in names if n in ("plain_channels_last", "plain_nchw")]
    print(f"{'batch':>5}  {'reference':>19}" + "".join(f"  {name:>24}" for name in names))
    for batch, rate in table:
        reference = max(plains, key=lambda n: rate[n]) if plains else names[0]
        cells = [f"{reference:>19}"] + [
            f"{rate[n]:>14.3f} ({rate[n] / rate[reference]:5.0%})" for n in names
        ]
        print(f"{batch:>5}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
