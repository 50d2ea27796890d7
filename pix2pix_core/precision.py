"""Numerics that cost speed: where bf16 autocast pays (devices that compute bf16 in
hardware), and subnormal floats, flushed to zero where the model runs."""

from __future__ import annotations

import torch


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bf16 natively, so that bf16 autocast speeds it up.

    CUDA from Ampere on; CPUs with AVX512-BF16 or AMX (e.g. AMD Zen 4, Intel Sapphire
    Rapids) (docs/design.md#bf16-autocast-where-native). Elsewhere oneDNN or the GPU
    emulates bf16, slower than fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cpu = torch.cpu
        # Private but long-standing helpers (torch >= 2.1); absent means not known to pay.
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(cpu, name, lambda: False)() for name in checks)
    return False


def flush_denormals() -> bool:
    """Treat subnormal floats as zero in this thread's CPU arithmetic (x86 FTZ and DAZ);
    True where the CPU supports it.

    The official N(0, 0.02) initialisation leaves many activations and gradients below
    float32's smallest normal (1.2e-38), and x86 cores compute those in microcode, many
    times slower than other numbers (docs/design.md#denormals-flushed-where-the-model-runs).
    Flushed, they become 0: a difference of less than 1e-38 in any one value. The mode
    belongs to the calling thread and the threads it starts later (PyTorch's intra-op
    threads among them), so call it in the thread that runs the model, before its first
    forward. CUDA kernels are not affected.
    """
    return torch.set_flush_denormal(True)
