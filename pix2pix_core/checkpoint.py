"""Checkpoints as bytes: the full training state, the generator alone, and official weights.

Everything is loaded with ``torch.load(weights_only=True)``: a checkpoint holds tensors, plain
containers and JSON strings, never pickled code. Each one carries its configs as JSON, so the
bytes alone rebuild the network. Storage (local, S3, ...) is the caller's business.
"""

from __future__ import annotations

import io
import json
from typing import IO, Any

import torch
from torch import nn

from pix2pix_core.networks import GENERATORS, GeneratorConfig, build_generator
from pix2pix_core.training import Pix2Pix

TRAINING_FORMAT = "pix2pix.training_checkpoint"
GENERATOR_FORMAT = "pix2pix.generator"
FORMAT_VERSION = 1

# Buffers that official checkpoints may lack (saved before PyTorch 0.4.1 added the counter) or
# carry although our modules have none (InstanceNorm stats written by PyTorch 0.4.0).
_OPTIONAL_BUFFERS = ("num_batches_tracked", "running_mean", "running_var")

Source = bytes | bytearray | memoryview | IO[bytes]


def save_checkpoint(model: Pix2Pix, extra: dict[str, Any] | None = None) -> bytes:
    """Serialise G, D, both optimizers and schedulers, the configs and ``extra`` (JSON-able
    metadata such as epoch, step or a dataset fingerprint)."""
    payload = {
        "format": TRAINING_FORMAT,
        "version": FORMAT_VERSION,
        "config": json.dumps(model.config_dict()),
        "extra": _to_json(extra),
        **model.state_dict(),
    }
    return _save(payload)


def load_checkpoint(
    data: Source, device: str | torch.device = "cpu"
) -> tuple[Pix2Pix, dict[str, Any]]:
    """Rebuild the ``Pix2Pix`` (with optimizer and scheduler state) that ``save_checkpoint``
    wrote; returns it and the ``extra`` metadata."""
    payload = _load(data)
    _check_format(payload, TRAINING_FORMAT)
    model = Pix2Pix.from_config_dict(json.loads(payload["config"]), device)
    model.load_state_dict(payload)
    return model, json.loads(payload["extra"])


def save_generator(
    generator_module: nn.Module, cfg: GeneratorConfig, extra: dict[str, Any] | None = None
) -> bytes:
    """Serialise a generator alone (for inference and model registries) with its config."""
    payload = {
        "format": GENERATOR_FORMAT,
        "version": FORMAT_VERSION,
        "generator_config": json.dumps(cfg.to_dict()),
        "extra": _to_json(extra),
        "netG": generator_module.state_dict(),
    }
    return _save(payload)


def load_generator(
    data: Source, device: str | torch.device = "cpu"
) -> tuple[nn.Module, GeneratorConfig, dict[str, Any]]:
    """Rebuild a generator from ``save_generator`` bytes or from a full training checkpoint.

    The module comes back in train mode, as built: the paper's test-time setting (batch
    statistics, dropout on). Call ``.eval()`` for running statistics and no dropout.
    """
    payload = _load(data)
    kind = payload.get("format") if isinstance(payload, dict) else None
    if kind == TRAINING_FORMAT:
        cfg = GeneratorConfig.from_dict(json.loads(payload["config"])["generator"])
    else:
        _check_format(payload, GENERATOR_FORMAT)
        cfg = GeneratorConfig.from_dict(json.loads(payload["generator_config"]))
    with torch.device("meta"):  # no random initialisation of weights about to be replaced
        net = build_generator(cfg)
    net.load_state_dict(payload["netG"], assign=True)
    return net.to(device), cfg, json.loads(payload["extra"])


def load_official_generator(
    state_dict_bytes: Source, cfg: GeneratorConfig, device: str | torch.device = "cpu"
) -> nn.Module:
    """Load an official pytorch-CycleGAN-and-pix2pix ``*_net_G.pth`` (a plain state dict).

    ``cfg`` must describe the network it was trained with (``--netG``, ``--ngf``, ``--norm``,
    ``--input_nc``, ``--output_nc``). A DataParallel ``module.`` prefix is stripped, and
    buffers that old PyTorch versions did or did not write are reconciled; every parameter
    must still match exactly.
    """
    state = _load(state_dict_bytes)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError("expected an official generator state dict (a dict of tensors)")
    given = {key.removeprefix("module."): value for key, value in state.items()}
    state = dict(given)
    net = build_generator(cfg)
    expected = net.state_dict()
    for key, value in expected.items():
        if key not in state and key.endswith(_OPTIONAL_BUFFERS):
            state[key] = value
    state = {
        key: value
        for key, value in state.items()
        if key in expected or not key.endswith(_OPTIONAL_BUFFERS)
    }
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        found = official_unet_flags(given)
        if found:
            holds = " ".join(f"--{k} {v}" for k, v in found.items())
            raise ValueError(f"the weights are of a U-Net {holds}, not of {cfg}") from None
        first = "\n".join(str(error).splitlines()[:3])
        raise ValueError(f"state dict does not fit a generator built from {cfg}: {first}") from None
    return net.to(device)


def official_unet_flags(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The official flags of the U-Net a state dict was saved from, or {} if it is none.

    Read from the weights' names and shapes (the official UnetGenerator's module tree):
    each level of the U-Net nests one `.model.` deeper; the outermost down-convolution
    gives ngf and input_nc, the outermost up-convolution output_nc. Dropout leaves no
    weights, so `--no_dropout` cannot be told.
    """
    first, last = state.get("model.model.0.weight"), state.get("model.model.3.weight")
    if first is None or last is None or first.dim() != 4 or last.dim() != 4:
        return {}
    depth = (max(key.count(".") for key in state) - 1) // 2
    if "model.model.1.model.2.weight" in state:  # the second level's norm has an affine
        norm = "batch"
    elif "model.model.1.model.1.bias" in state:  # convolutions keep a bias before instance norm
        norm = "instance"
    else:
        norm = "none"
    named = {d: {"netG": name} for name, d in GENERATORS.items()}
    return {
        **named.get(depth, {"num_downs": depth}),
        "ngf": first.shape[0],
        "norm": norm,
        "input_nc": first.shape[1],
        "output_nc": last.shape[1],
    }


def _to_json(extra: dict[str, Any] | None) -> str:
    try:
        return json.dumps(extra or {})
    except TypeError as error:
        raise ValueError(f"checkpoint extra must be JSON-serialisable: {error}") from None


def _save(payload: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _load(data: Source) -> Any:
    source = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    return torch.load(source, map_location="cpu", weights_only=True)


def _check_format(payload: Any, expected: str) -> None:
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != expected:
        raise ValueError(f"not a {expected} (format is {found!r})")
    if payload.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"unsupported {expected} version {payload.get('version')!r} "
            f"(this code reads version {FORMAT_VERSION})"
        )
