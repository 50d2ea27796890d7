"""The prepared GPU check of `pix2pix train`: one script, a few minutes on one H100.

1. numerics on one batch, same weights: bf16 autocast vs fp32 (losses of a step and G's
   output), channels_last vs PyTorch's default layout, torch.compile and CUDA graphs
   (`--compile_mode reduce-overhead`) vs eager;
2. a 1-GPU `TorchTrainer` run of two epochs through `pipelines.train.driver.train`;
3. a table of training images/s for the paper's configuration (unet_256, 70x70 PatchGAN,
   batch norm, 256 x 256) at batch 1 and 4 under each setting, and of translation
   (generator inference) images/s.

Without CUDA it runs on the CPU and skips what needs CUDA (compile, CUDA graphs), and the
bf16 check where the CPU has no native bf16; `--tiny` shrinks the model and images so that
the test suite runs it in seconds:

    python benchmarks/gpu_check.py                # on the GPU machine
    python benchmarks/gpu_check.py --tiny         # CPU smoke run (what the tests do)

Exit status 1 when a check fails; `--json PATH` writes every result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pix2pix_core import DiscriminatorConfig, GeneratorConfig, Pix2Pix
from pix2pix_core.precision import native_bf16

CUDA_GRAPHS = "reduce-overhead"  # the torch.compile mode that replays CUDA graphs


@dataclass(frozen=True)
class Model:
    """The networks a check builds (pure pix2pix_core: this script runs without Ray)."""

    label: str
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    flags: dict[str, Any]  # the same model as `pix2pix train` flags


# unet_256, 70x70 PatchGAN, batch norm: the paper's defaults
PAPER = Model("unet_256", GeneratorConfig(), DiscriminatorConfig(), {})
TINY = Model(
    "tiny U-Net",
    GeneratorConfig(num_downs=5, ngf=8),
    DiscriminatorConfig(ndf=8),
    {"num_downs": 5, "ngf": 8, "ndf": 8},
)

# Training settings compared in the table: name -> (perf switches, needs CUDA).
SETTINGS: dict[str, tuple[dict[str, Any], bool]] = {
    "fp32, NCHW (PyTorch default)": (
        {"channels_last": False, "autocast": False, "fused_adam": False},
        False,
    ),
    "fp32, channels_last": ({"channels_last": True, "autocast": False}, False),
    "bf16 autocast, NCHW": ({"channels_last": False, "autocast": True}, True),
    "bf16 autocast, channels_last (default on CUDA)": (
        {"channels_last": True, "autocast": True},
        True,
    ),
    "bf16, channels_last, torch.compile": (
        {"channels_last": True, "autocast": True, "compile": True},
        True,
    ),
    "bf16, channels_last, CUDA graphs (--compile_mode reduce-overhead)": (
        {"channels_last": True, "autocast": True, "compile": True, "compile_mode": CUDA_GRAPHS},
        True,
    ),
}


@dataclass
class Check:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str


def build(model: Model, device: str, **switches: Any) -> Pix2Pix:
    if switches.get("compile"):
        # Compiled code is cached per function, not per model: this script builds many
        # models, and without a reset dynamo stops recompiling (recompile_limit) and falls
        # back to eager. Each compiled model starts as in a fresh process.
        torch._dynamo.reset()
    return Pix2Pix(model.generator, model.discriminator, device, seed=0, **switches)


def batch_of(n: int, size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    a = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    b = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return a.to(device), b.to(device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def compare(
    name: str,
    model: Model,
    device: str,
    size: int,
    reference: dict[str, Any],
    candidate: dict[str, Any],
    *,
    out_tol: float,
    loss_tol: float,
) -> Check:
    """Same weights, same batch, same dropout masks: G's output and one step's losses."""
    a, b = batch_of(2, size, device)
    results = []
    for switches in (reference, candidate):
        net = build(model, device, **switches)
        fake = net.translate(a, eval_mode=True)
        torch.manual_seed(1)  # the same dropout masks in both steps
        losses = net.train_step(a, b)
        results.append((fake.float(), losses))
    (fake_ref, loss_ref), (fake_new, loss_new) = results
    out_err = float((fake_ref - fake_new).abs().mean())
    loss_err = max(abs(loss_ref[k] - loss_new[k]) / max(abs(loss_ref[k]), 1e-3) for k in loss_ref)
    ok = out_err <= out_tol and loss_err <= loss_tol
    detail = (
        f"mean |output diff| {out_err:.2e} (<= {out_tol:g}), "
        f"max relative loss diff {loss_err:.2e} (<= {loss_tol:g})"
    )
    return Check(name, "PASS" if ok else "FAIL", detail)


def numerics(model: Model, device: str, size: int) -> list[Check]:
    fp32 = {"channels_last": False, "autocast": False}
    checks = [
        compare(
            "channels_last matches NCHW (fp32)",
            model,
            device,
            size,
            fp32,
            {"channels_last": True, "autocast": False},
            out_tol=1e-3,
            loss_tol=1e-2,
        )
    ]
    bf16 = "bf16 autocast close to fp32"
    if native_bf16(device):  # CUDA from Ampere on, CPUs with AVX512-BF16 or AMX
        checks.append(
            compare(
                bf16,
                model,
                device,
                size,
                fp32,
                {"channels_last": device == "cuda", "autocast": True},
                out_tol=3e-2,
                loss_tol=5e-2,
            )
        )
    else:
        checks.append(Check(bf16, "SKIP", "no native bf16 on this device"))
    if device != "cuda":
        for name in ("torch.compile matches eager", "CUDA graphs match eager"):
            checks.append(Check(name, "SKIP", "needs CUDA"))
        return checks
    checks.append(
        compare(
            "torch.compile matches eager",
            model,
            device,
            size,
            {"channels_last": True, "autocast": True},
            {"channels_last": True, "autocast": True, "compile": True},
            out_tol=1e-2,
            loss_tol=2e-2,
        )
    )
    checks.append(
        compare(
            "CUDA graphs match eager",
            model,
            device,
            size,
            {"channels_last": True, "autocast": True},
            {"channels_last": True, "autocast": True, "compile": True, "compile_mode": CUDA_GRAPHS},
            out_tol=1e-2,
            loss_tol=2e-2,
        )
    )
    return checks


def trainer_run(tiny: bool, device: str) -> Check:
    """Two epochs of `pix2pix train` on one worker (the GPU where there is one)."""
    name = f"TorchTrainer, 1 worker ({'GPU' if device == 'cuda' else 'CPU'}), 2 epochs"
    try:
        import ray.data

        from pipelines.common.ray_runtime import init_ray
        from pipelines.common.storage import Location
        from pipelines.config.groups import CommonOptions
        from pipelines.demo.sample_data import make_pairs, write_dataset
        from pipelines.prepare import PrepareOptions, prepare
        from pipelines.train import TrainConfig, train
    except ImportError as err:
        return Check(name, "SKIP", f"not installed here: {err.name}")
    crop = 32 if tiny else 256
    model = TINY if tiny else PAPER
    with tempfile.TemporaryDirectory() as root:
        init_ray()
        ray.data.DataContext.get_current().enable_progress_bars = False
        pairs = make_pairs(10, size=crop + (4 if tiny else 30), seed=0)
        src = Location.parse(os.path.join(root, "src"))
        write_dataset({"train": pairs[:8], "val": pairs[8:]}, src)
        data = Location.parse(os.path.join(root, "prepared"))
        prepare(src, data, PrepareOptions(load_size=crop + (4 if tiny else 30)))
        cfg = TrainConfig().replace(
            **model.flags,
            n_epochs=1,
            n_epochs_decay=1,
            data=data.url,
            crop_size=crop,
            num_workers=1,
            use_gpu=device == "cuda",
            keep_best=1,
        )
        common = CommonOptions(
            storage_path=os.path.join(root, "runs"),
            run_name="gpu-check",
            tracking_uri=f"sqlite:///{root}/mlflow.db",
            experiment="gpu-check",
        )
        started = time.perf_counter()
        result = train(cfg, common)
        seconds = time.perf_counter() - started
    ok = result.epochs == 2 and result.metrics.get("val_L1", float("nan")) == result.metrics.get(
        "val_L1"
    )
    detail = (
        f"{result.epochs} epochs in {seconds:.0f} s, val L1 {result.metrics.get('val_L1'):.4f}, "
        f"{result.metrics.get('images_per_s', 0):.1f} img/s in the last epoch"
    )
    return Check(name, "PASS" if ok else "FAIL", detail)


def train_rate(model: Model, device: str, size: int, batch: int, steps: int, **sw) -> float:
    net = build(model, device, **sw)
    a, b = batch_of(batch, size, device)
    # compile: the first calls compile; CUDA graphs are recorded on a later one
    for _ in range(3 if sw.get("compile") else 1):
        net.train_step(a, b)
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        net.train_step(a, b)
    _sync(device)
    return steps * batch / (time.perf_counter() - started)


def translate_rate(model: Model, device: str, size: int, batch: int, steps: int) -> float:
    net = build(model, device)  # the device's defaults (bf16 + channels_last on CUDA)
    a, _ = batch_of(batch, size, device)
    net.translate(a, eval_mode=True)
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        net.translate(a, eval_mode=True)
    _sync(device)
    return steps * batch / (time.perf_counter() - started)


def throughput(model: Model, device: str, size: int, steps: int) -> list[dict[str, Any]]:
    rows = []
    for setting, (switches, needs_cuda) in SETTINGS.items():
        for batch in (1, 4):
            if needs_cuda and device != "cuda":
                rows.append({"what": "train", "setting": setting, "batch": batch, "rate": None})
                continue
            rate = train_rate(model, device, size, batch, steps, **switches)
            rows.append({"what": "train", "setting": setting, "batch": batch, "rate": rate})
    for batch in (1, 4, 16):
        rate = translate_rate(model, device, size, batch, steps)
        rows.append({"what": "translate", "setting": "default", "batch": batch, "rate": rate})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model, 32 px (CPU smoke run)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per table cell")
    parser.add_argument("--no_trainer", action="store_true", help="skip the TorchTrainer run")
    parser.add_argument("--json", help="write all results to this file")
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, size = (TINY, 32) if args.tiny else (PAPER, 256)
    steps = args.steps or (1 if args.tiny else 20 if device == "cuda" else 3)
    name = torch.cuda.get_device_name() if device == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"gpu_check: torch {torch.__version__}, {name}, {'tiny' if args.tiny else 'paper'} model")

    started = time.perf_counter()
    checks = numerics(model, device, size)
    if args.no_trainer:
        checks.append(Check("TorchTrainer run", "SKIP", "--no_trainer"))
    else:
        checks.append(trainer_run(args.tiny, device))
    for c in checks:
        print(f"  [{c.status}] {c.name}: {c.detail}", flush=True)

    rows = throughput(model, device, size, steps)
    print(f"\nimages/s, {model.label}, {size}x{size}, {name}")
    print("| what | setting | batch | images/s |\n| --- | --- | --- | --- |")
    for r in rows:
        rate = "skipped (needs CUDA)" if r["rate"] is None else f"{r['rate']:.1f}"
        print(f"| {r['what']} | {r['setting']} | {r['batch']} | {rate} |")
    print(f"\ngpu_check: done in {time.perf_counter() - started:.0f} s")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "checks": [asdict(c) for c in checks], "rows": rows}, f)
    return 1 if any(c.status == "FAIL" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
