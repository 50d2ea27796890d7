"""Translate throughput: `pix2pix translate` end to end against plain PyTorch.

On the same N 256 x 256 JPEGs (photo crops from pipelines.demo.sample_data) and the same
unet_256 generator (eval mode), in images per second:

- plain forward (the reference): the generator as plain PyTorch runs it fastest here, in
  one process with a torch thread per core: `build_generator`, eval mode, channels_last,
  bf16 autocast where the device computes bf16 natively (else fp32), denormals flushed,
  batch 8, random tensors in a tight loop: the compute limit (12.1 GFLOP per forward);
- plain loop: per image, Pillow open, resize to 256, one fp32 forward at batch 1 in
  PyTorch's default layout (NCHW) and thread count, save a PNG: what a script would do;
- bare forward: the generator as the pipeline's actor prepares and runs it (batch norm
  folded, freed memory kept), at the pipeline's batch size and precision, on random
  tensors: in one process, and in the pipeline's own layout, one single-threaded process
  per core side by side (one process on a GPU);
- end to end: the `pix2pix translate` command in a fresh process, Ray start-up, listing,
  decoding, writing and the manifest included;
- steady state: end to end less its fixed costs, measured as the same command on one batch
  per actor (interpreter, Ray start-up and shutdown, the actors' start): the rate of the
  extra images, (N - n_few) / (t_N - t_few);
- Ray's floor: the same Ray Data shape with nothing to do (ray_floor.py), the part of the
  fixed costs that no work inside the pipeline can save.

Every ratio is against the plain forward, measured in the same run. Targets on a 2-core
CPU machine: end to end >= 85% of the plain forward and >= 2.5x the plain loop, the steady
state >= 90%. On a GPU the plain loop is bound by decoding and batch-1 launches and the
pipeline should beat it by an order of magnitude.

    python benchmarks/bench_translate.py            # 1000 images
    python benchmarks/bench_translate.py --n 5000   # 5,000 images (plain loop: 500,
                                                    # forward loops: 1,000)
    python benchmarks/bench_translate.py --no_autocast   # fp32 where bf16 is the default
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from pipelines.demo.sample_data import encode, make_pairs  # noqa: E402
from pipelines.translate.actors import Runtime, prepare_generator  # noqa: E402
from pipelines.translate.options import TranslateOptions  # noqa: E402
from pix2pix_core import GeneratorConfig, build_generator, save_generator  # noqa: E402
from pix2pix_core.memory import retain_freed_memory  # noqa: E402
from pix2pix_core.networks import init_weights  # noqa: E402
from pix2pix_core.precision import flush_denormals, native_bf16  # noqa: E402

SIZE = 256
GFLOP_PER_IMAGE = 12.1  # one 256 x 256 unet_256 forward
PLAIN_BATCH = 8  # the reference's batch


def make_images(folder: Path, n: int) -> list[Path]:
    """N distinct JPEGs: a few dozen photo crops, each varied by flips and rolls."""
    folder.mkdir(parents=True, exist_ok=True)
    crops = [p.b for p in make_pairs(min(n, 48), size=SIZE, seed=0, kind="edges")]
    paths = []
    for i in range(n):
        image = crops[i % len(crops)]
        variant = i // len(crops)
        image = np.roll(image, 7 * variant, axis=1)
        if variant % 2:
            image = image[:, ::-1]
        path = folder / f"{i // 100:03d}" / f"img_{i:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encode(np.ascontiguousarray(image), "jpg"))
        paths.append(path)
    return paths


def make_model(path: Path) -> tuple[GeneratorConfig, dict]:
    torch.manual_seed(0)
    config = GeneratorConfig(netG="unet_256")
    module = init_weights(build_generator(config))
    path.write_bytes(save_generator(module, config, {"eval_mode": True}))
    return config, module.state_dict()


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def plain_loop(config: GeneratorConfig, state: dict, paths: list[Path], out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    model = build_generator(config)
    model.load_state_dict(state)
    model.eval().to(DEVICE)
    start = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            image = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
            x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float()
            y = model(x.to(DEVICE) / 127.5 - 1.0)[0]
            pixels = ((y + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
            Image.fromarray(pixels).save(out / f"{path.stem}.png")
    return len(paths) / (time.perf_counter() - start)


def _bare_worker(
    config: dict, n: int, batch_size: int, threads: int, autocast, plain, barrier, results
) -> None:
    """One process of a forward loop: plain PyTorch (`plain`), or the generator as the
    pipeline's actor prepares it."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    generator_config = GeneratorConfig.from_dict(config)
    module = init_weights(build_generator(generator_config))
    bf16 = native_bf16(DEVICE) if autocast is None else autocast
    if plain:
        torch.set_flush_denormal(True)
        model = module.eval().to(DEVICE, memory_format=torch.channels_last)
    else:
        retain_freed_memory()  # as the actor does
        flush_denormals()
        runtime = Runtime(
            device=DEVICE,
            threads=threads,
            batch_size=batch_size,
            tile=SIZE,
            eval_mode=True,
            autocast=autocast,
        )
        model = prepare_generator(generator_config, module.state_dict(), runtime)
    x = torch.rand(batch_size, 3, SIZE, SIZE, device=DEVICE)
    x = x.contiguous(memory_format=torch.channels_last)
    batches = max(1, -(-n // batch_size))
    amp = torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), amp:
        model(x)  # warm-up: oneDNN and cuDNN pick their kernels on the first call
        _sync()
        barrier.wait()  # the processes start timing together
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
        _sync()
    results.put(batches * batch_size / (time.perf_counter() - start))


def bare_forward(
    config: GeneratorConfig,
    n: int,
    batch_size: int,
    processes: int,
    threads: int,
    autocast: bool | None = None,
    *,
    plain: bool = False,
) -> float:
    """Images/s of `processes` tight forward loops side by side, `threads` torch threads each
    (`plain`: plain PyTorch's fastest forward; else the pipeline's prepared generator).

    Each process runs n / processes images; the rate is the sum of theirs.
    """
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    share = -(-n // processes)
    args = (config.to_dict(), share, batch_size, threads, autocast, plain, barrier, results)
    workers = [context.Process(target=_bare_worker, args=args) for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


def _timed_run(command: list[str], name: str) -> tuple[float, str]:
    """Wall seconds and stdout of `command` in a fresh process, Ray's workers at nice 0.

    Ray runs its workers at nice 15. On a dedicated machine that changes nothing; on a
    shared one it alone would decide the comparison, so they run at 0 like the references.
    """
    env = {**os.environ, "RAY_worker_niceness": "0"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def end_to_end(
    model: Path, src: Path, dst: Path, batch_size: int, autocast: bool | None = None
) -> float:
    """Wall seconds of `pix2pix translate` over `src` in a fresh process."""
    command = [
        sys.executable, "-m", "pipelines.cli", "translate",
        "--model", str(model), "--input", str(src), "--output", str(dst),
        "--batch_size", str(batch_size), "--eval",
    ]  # fmt: skip
    if autocast is not None:
        command.append("--autocast" if autocast else "--no_autocast")
    seconds, stdout = _timed_run(command, "pix2pix translate")
    print("  " + stdout.strip().splitlines()[-1])
    return seconds


def ray_floor(actors: int) -> float:
    """Wall seconds of benchmarks/ray_floor.py in a fresh process."""
    script = str(Path(__file__).with_name("ray_floor.py"))
    return _timed_run([sys.executable, script, "--actors", str(actors)], "ray_floor.py")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of images")
    parser.add_argument(
        "--plain_n",
        type=int,
        default=500,
        help="images the plain loop times, the first of the N (its rate is per image, and "
        "it is the slowest part of the benchmark)",
    )
    parser.add_argument(
        "--forward_n",
        type=int,
        default=1000,
        help="images each tight forward loop (plain and bare) times, at most N",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=TranslateOptions.__dataclass_fields__["batch_size"].default,
        help="the pipeline's batch size (default: translate's default)",
    )
    parser.add_argument(
        "--autocast",
        action="store_true",
        default=None,
        help="bf16 autocast in the pipeline and the bare forward (default: translate's, "
        "where the device computes bf16 natively); the plain loop stays fp32",
    )
    parser.add_argument("--no_autocast", dest="autocast", action="store_false", help="both in fp32")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench_translate_") as tmp:
        work = Path(tmp)
        paths = make_images(work / "src", args.n)
        config, state = make_model(work / "generator.pt")
        bf16 = native_bf16(DEVICE) if args.autocast is None else args.autocast
        print(
            f"{args.n} JPEGs of {SIZE}x{SIZE}, unet_256, eval mode; pipeline and bare forward "
            f"in {'bf16 autocast' if bf16 else 'fp32'}, plain loop in fp32"
        )

        # The load average says how much else ran on the machine during each measurement.
        model = work / "generator.pt"
        seconds = end_to_end(model, work / "src", work / "dst", args.batch_size, args.autocast)
        e2e = args.n / seconds
        loads = {"end to end": os.getloadavg()[0]}
        cores = os.cpu_count() or 1
        # The pipeline's layout: on CPUs one single-threaded actor per core, else one.
        actors = 1 if DEVICE == "cuda" else cores
        few = min(args.n, actors * args.batch_size)  # one batch per actor
        for path in paths[:few]:
            copy = work / "few" / path.relative_to(work / "src")
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
        few_seconds = end_to_end(
            model, work / "few", work / "few_dst", args.batch_size, args.autocast
        )
        loads["one batch per actor"] = os.getloadavg()[0]
        floor = ray_floor(actors)
        loads["Ray's floor"] = os.getloadavg()[0]
        plain = plain_loop(config, state, paths[: args.plain_n], work / "plain")
        loads["plain loop"] = os.getloadavg()[0]
        timed = min(args.n, args.forward_n)
        reference = bare_forward(config, timed, PLAIN_BATCH, 1, cores, args.autocast, plain=True)
        loads["plain forward"] = os.getloadavg()[0]
        bare_one = bare_forward(config, timed, args.batch_size, 1, cores, args.autocast)
        loads["bare forward, one process"] = os.getloadavg()[0]
        bare_actors = bare_forward(config, timed, args.batch_size, actors, 1, args.autocast)
        loads[f"bare forward, {actors} processes"] = os.getloadavg()[0]
        print(
            "load average (1 min) after each: "
            + ", ".join(f"{k} {v:.1f}" for k, v in loads.items())
        )

    fixed = max(0.0, few_seconds - few / bare_actors)
    steady = (args.n - few) / max(1e-9, seconds - few_seconds)
    rows = [
        (f"plain forward (batch {PLAIN_BATCH}), 1 x {cores} threads: the reference", reference),
        ("plain loop (batch 1, NCHW, fp32)", plain),
        (f"bare forward (batch {args.batch_size}), 1 x {cores} threads", bare_one),
        (f"bare forward (batch {args.batch_size}), {actors} x 1 thread", bare_actors),
        ("pix2pix translate, end to end", e2e),
        ("pix2pix translate, steady state", steady),
    ]
    for name, rate in rows:
        ratio = f"{rate / reference:5.0%} of the reference"
        print(f"{name:<58} {rate:7.2f} images/s  {rate * GFLOP_PER_IMAGE:6.1f} GFLOP/s  {ratio}")
    print(f"fixed costs (one batch per actor, less its forward): {fixed:.1f} s")
    print(f"Ray's floor (an empty pipeline of the same shape):   {floor:.1f} s")
    print(f"end to end / plain forward:   {e2e / reference:.0%}  (target >= 85%)")
    print(f"steady state / plain forward: {steady / reference:.0%}  (target >= 90%)")
    print(f"end to end / plain loop:      {e2e / plain:.2f}x  (target >= 2.5x)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "n": args.n,
                    "batch_size": args.batch_size,
                    "bf16_autocast": bf16,
                    "images_per_s": {
                        "plain_forward": reference,
                        "plain_loop": plain,
                        "bare_one_process": bare_one,
                        f"bare_{actors}_processes": bare_actors,
                        "end_to_end": e2e,
                        "steady_state": steady,
                    },
                    "fixed_costs_s": fixed,
                    "ray_floor_s": floor,
                    "load_average_after": loads,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
