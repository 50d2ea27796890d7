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

from pix2pix_core.networks import RESNET_BLOCKS, UNET_DEPTHS, GeneratorConfig, build_generator
from pix2pix_core.training import Pix2Pix

TRAINING_FORMAT = "pix2pix.training_checkpoint"
GENERATOR_FORMAT = "pix2pix.generator"
FORMAT_VERSION = 1

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
    """Load an official pytorch-CycleGAN-and-pix2pix ``*_net_G.pth`` (a plain state dict) as
    strictly as the official ``BaseModel.load_networks`` does.

    ``cfg`` must describe the network it was trained with (``--netG``, ``--ngf``, ``--norm``,
    ``--input_nc``, ``--output_nc``, and ``--no_dropout`` for a ResNet). As in the official
    load, the file's ``_metadata`` is dropped (so batch norms without ``num_batches_tracked``,
    written before PyTorch 0.4.1, get a zero count) and the running statistics and counters
    that PyTorch 0.4.0 wrote for instance norms are discarded; anything else missing or extra
    (batch-norm running statistics included) refuses the file, naming the keys. A
    DataParallel ``module.`` prefix is stripped.
    """
    state = _load(state_dict_bytes)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError("expected an official generator state dict (a dict of tensors)")
    given = {key.removeprefix("module."): value for key, value in state.items()}
    net = build_generator(cfg)
    state = _drop_instance_norm_stats(dict(given), net)
    found = official_generator_flags(given)
    if found and found != generator_flags(cfg):
        kind = "U-Net" if _is_unet_flags(found) else "ResNet"
        raise ValueError(f"the weights are of a {kind} {_as_flags(found)}, not of {cfg}")
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        problems = [
            f"{what} {_listed(keys)}"
            for what, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise ValueError(
            f"state dict does not fit a generator built from {cfg}: {'; '.join(problems)} "
            "(the official strict load refuses it too)"
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = "\n".join(str(error).splitlines()[:3])
        raise ValueError(f"state dict does not fit a generator built from {cfg}: {first}") from None
    return net.to(device)


def _drop_instance_norm_stats(state: dict[str, torch.Tensor], net: nn.Module) -> dict:
    """The official ``__patch_instance_norm_state_dict``: an instance norm's ``running_mean``
    and ``running_var`` (where it keeps none) and its ``num_batches_tracked`` are dropped."""
    modules = dict(net.named_modules())
    for key in list(state):
        owner, _, name = key.rpartition(".")
        module = modules.get(owner)
        if not isinstance(module, nn.modules.instancenorm._InstanceNorm):
            continue
        stale_stats = name in ("running_mean", "running_var") and getattr(module, name) is None
        if stale_stats or name == "num_batches_tracked":
            del state[key]
    return state


def _listed(keys: list[str], shown: int = 4) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)} key(s): {', '.join(keys[:shown])}{more}"


def _as_flags(flags: dict[str, Any]) -> str:
    return " ".join(f"--{k}" if v is True else f"--{k} {v}" for k, v in flags.items())


def _is_unet_flags(flags: dict[str, Any]) -> bool:
    return "num_downs" in flags or flags.get("netG") in UNET_DEPTHS


def generator_flags(cfg: GeneratorConfig) -> dict[str, Any]:
    """The official flags of ``cfg`` that a state dict shows (as ``official_generator_flags``
    reads them): "syncbatch" saves as "batch", and a U-Net's dropout leaves no weights."""
    if cfg.is_unet:
        named = {d: name for name, d in UNET_DEPTHS.items()}
        size = {"netG": named[cfg.depth]} if cfg.depth in named else {"num_downs": cfg.depth}
    else:
        size = {"netG": cfg.netG}
    flags = {
        **size,
        "ngf": cfg.ngf,
        "norm": "batch" if cfg.norm == "syncbatch" else cfg.norm,
        "input_nc": cfg.input_nc,
        "output_nc": cfg.output_nc,
    }
    if not cfg.is_unet and not cfg.use_dropout:
        flags["no_dropout"] = True
    return flags


def official_generator_flags(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The official flags of the U-Net or ResNet a state dict was saved from, or {}."""
    return official_unet_flags(state) or official_resnet_flags(state)


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
    named = {d: {"netG": name} for name, d in UNET_DEPTHS.items()}
    return {
        **named.get(depth, {"num_downs": depth}),
        "ngf": first.shape[0],
        "norm": norm,
        "input_nc": first.shape[1],
        "output_nc": last.shape[1],
    }


def official_resnet_flags(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The official flags of the ResNet a state dict was saved from, or {} if it is none.

    Read from the official ResnetGenerator's flat layer list: ``model.1`` is the 7x7 stem
    (ngf, input_nc), the last 7x7 conv the head (output_nc), each ``model.N.conv_block`` a
    residual block; dropout shifts a block's second conv from slot 5 to slot 6.
    """

    def slot(key: str) -> int | None:  # N of "model.N...."
        parts = key.split(".")
        return int(parts[1]) if parts[0] == "model" and parts[1].isdigit() else None

    convs = {slot(k): v for k, v in state.items() if k.count(".") == 2 and k.endswith(".weight")}
    convs.pop(None, None)
    first = convs.get(1)
    blocks = sorted({slot(k) for k in state if ".conv_block." in k} - {None})
    named = {n: name for name, n in RESNET_BLOCKS.items()}
    if first is None or first.dim() != 4 or tuple(first.shape[2:]) != (7, 7) or not blocks:
        return {}
    if len(blocks) not in named:
        return {}
    last = convs[max(convs)]
    if "model.2.weight" in state:  # the stem's norm has an affine
        norm = "batch"
    elif "model.1.bias" in state:  # convolutions keep a bias before instance norm
        norm = "instance"
    else:
        norm = "none"
    flags = {
        "netG": named[len(blocks)],
        "ngf": first.shape[0],
        "norm": norm,
        "input_nc": first.shape[1],
        "output_nc": last.shape[0],
    }
    second_conv = state.get(f"model.{blocks[0]}.conv_block.6.weight")
    if second_conv is None or second_conv.dim() != 4:  # slot 6: a norm or nothing
        flags["no_dropout"] = True
    return flags


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
