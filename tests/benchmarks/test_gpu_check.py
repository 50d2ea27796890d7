"""benchmarks/gpu_check.py runs on a machine without CUDA, skipping the CUDA parts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

from pix2pix_core.precision import native_bf16

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_on_cpu_with_tiny_settings(ray_cluster, tmp_path, capsys):
    gpu_check = _load_script()
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--tiny", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    status = {c["name"]: c["status"] for c in report["checks"]}
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    assert status["channels_last matches NCHW (fp32)"] == "PASS"
    assert status["bf16 autocast close to fp32"] == ("PASS" if native_bf16(device) else "SKIP")
    assert status["torch.compile matches eager"] == ("PASS" if cuda else "SKIP")
    assert status["CUDA graphs match eager"] == ("PASS" if cuda else "SKIP")
    trainer = [name for name in status if name.startswith("TorchTrainer")]
    assert len(trainer) == 1 and status[trainer[0]] == "PASS"

    rows = report["rows"]
    train_rows = [r for r in rows if r["what"] == "train"]
    assert {r["batch"] for r in train_rows} == {1, 4}
    for r in train_rows:
        needs_cuda = "bf16" in r["setting"]
        assert (r["rate"] is None) == (needs_cuda and not cuda)
        assert r["rate"] is None or r["rate"] > 0
    assert all(r["rate"] > 0 for r in rows if r["what"] == "translate")
    printed = capsys.readouterr().out
    assert "| train | fp32, NCHW (PyTorch default) | 1 |" in printed
