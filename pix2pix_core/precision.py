"""Where bf16 autocast pays: devices that compute bf16 in hardware."""

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
