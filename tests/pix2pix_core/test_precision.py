"""native_bf16: bf16 autocast only where the hardware computes bf16."""

from pathlib import Path

import pytest
import torch

from pix2pix_core.precision import native_bf16

CPUINFO = Path("/proc/cpuinfo")


@pytest.mark.skipif(not CPUINFO.exists(), reason="reads the CPU flags from /proc/cpuinfo")
def test_cpu_has_native_bf16_exactly_when_it_has_avx512_bf16_or_amx():
    flags = set()
    for line in CPUINFO.read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    assert native_bf16("cpu") == bool(flags & {"avx512_bf16", "amx_tile"})
    assert native_bf16(torch.device("cpu")) == native_bf16("cpu")


def test_cuda_without_a_gpu_and_other_devices_are_not_native():
    if not torch.cuda.is_available():
        assert not native_bf16("cuda")
    assert not native_bf16("meta")
