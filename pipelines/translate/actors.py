"""The model stage of `pix2pix translate`: a Ray Data callable class, one per actor.

`__init__` builds the generator once from weights in the object store (the driver loaded
and checked them); `__call__` translates a batch under `torch.inference_mode()`, with the
tiles of all its images batched together (pix2pix_core.tiling).

Test-time semantics. The paper runs the generator at test time as in training: dropout on,
batch norm with the statistics of the test batch, and the official test does so unless
`--eval`; a model of this project records which it was validated with (`eval_mode`). In
"train" mode the official test runs one image at a time, so the statistics are each
image's own; here every BatchNorm computes per-sample statistics instead (instance norm
with the BatchNorm's affine), which is the same maths and lets images share a batch.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from pipelines.translate.io import Batch, encode_and_write, pack, read_and_decode, unpack
from pix2pix_core import GeneratorConfig, build_generator, to_tensor, to_uint8
from pix2pix_core.memory import retain_freed_memory
from pix2pix_core.precision import native_bf16
from pix2pix_core.tiling import translate_tiled


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """How an actor runs the model (decided on the driver from flags and the cluster)."""

    device: str = "cpu"
    threads: int = 1
    batch_size: int = 1
    tile: int = 256
    overlap: int = 64
    eval_mode: bool = True
    channels_last: bool = True
    autocast: bool | None = None  # bf16; None: where the actor's device computes it natively
    compile: bool = False
    compile_mode: str = "default"  # reduce-overhead: CUDA graphs, for launch-bound batches

    def uses_autocast(self) -> bool:
        """Decided where the model runs: a cluster's nodes may differ."""
        return native_bf16(self.device) if self.autocast is None else self.autocast


class PerSampleBatchNorm(nn.Module):
    """BatchNorm in training mode as at batch size 1: each sample's own statistics."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def per_sample_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in `module` (in place) by `PerSampleBatchNorm`."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, PerSampleBatchNorm(child))
        else:
            per_sample_batch_norm(child)
    return module


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """Eval mode: fold each BatchNorm into the convolution before it (in place).

    The same affine maths in one pass instead of two; about a tenth of a CPU forward.
    """
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                transpose = isinstance(conv, nn.ConvTranspose2d)
                seq[i] = fuse_conv_bn_eval(conv, bn, transpose=transpose)
                seq[i + 1] = nn.Identity()
    return module


def prepare_generator(
    config: GeneratorConfig, state_dict: dict[str, torch.Tensor], runtime: Runtime
) -> nn.Module:
    """The generator ready for inference with `runtime`'s semantics, device and layout."""
    with torch.device("meta"):  # no random initialisation of weights about to be replaced
        model = build_generator(config)
    model.load_state_dict(state_dict, assign=True)
    if runtime.eval_mode:
        model.eval()
        fold_batch_norm(model)
    else:
        model.train()  # dropout on, as the paper's test time
        per_sample_batch_norm(model)
    model.requires_grad_(False)
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _weights_in_place(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Tensors on the object store's read-only arrays, without a copy.

    A copy would cost each actor memory and start-up time and be thrown away: batch-norm
    folding and the memory layout make new tensors of most weights, and the forward never
    writes to the rest (docs/design.md#weights-shared-through-the-object-store).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return {name: torch.from_numpy(array) for name, array in arrays.items()}


class Translator:
    """Ray Data callable class: the generator, loaded once per actor."""

    def __init__(self, model: dict[str, Any], runtime: Runtime) -> None:
        torch.set_num_threads(max(1, runtime.threads))
        retain_freed_memory()
        state = model["state_dict"]
        if isinstance(state, ray.ObjectRef):
            state = ray.get(state)
        state = _weights_in_place(state)
        self.runtime = runtime
        self.autocast = runtime.uses_autocast()
        self.model = prepare_generator(GeneratorConfig.from_dict(model["config"]), state, runtime)
        if runtime.compile:
            # Tiles have one size: shapes are static but for a last, smaller batch.
            self.model = torch.compile(self.model, mode=runtime.compile_mode)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        rt = self.runtime
        x = x.to(rt.device, non_blocking=True)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        device_type = torch.device(rt.device).type
        amp = (
            torch.autocast(device_type, dtype=torch.bfloat16)
            if self.autocast
            else contextlib.nullcontext()
        )
        with amp:
            y = self.model(x)
        return y.float().cpu().contiguous()

    def _translate(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 H x W x C images -> translated uint8 images, one float image at a time."""
        rt = self.runtime
        # to_tensor copies the batch's read-only buffers itself.
        inputs = (to_tensor(a) for a in arrays)
        outputs = translate_tiled(
            self._forward, inputs, tile=rt.tile, overlap=rt.overlap, batch_size=rt.batch_size
        )
        return [to_uint8(out) for out in outputs]

    def __call__(self, batch: Batch) -> Batch:
        out = dict(batch)
        reasons = [str(r) for r in batch["reason"]]
        todo = [i for i, r in enumerate(reasons) if not r]
        # 1. preprocess: the images that decoded, back to arrays
        arrays = [
            unpack(batch["pixels"][i], batch["h"][i], batch["w"][i], batch["c"][i]) for i in todo
        ]
        # 2. generate: tiles of the whole batch together; one bad image must not sink the rest
        with torch.inference_mode():
            try:
                results: list[np.ndarray | Exception] = list(self._translate(arrays))
            except Exception:
                results = []
                for array in arrays:
                    try:
                        results.append(self._translate([array])[0])
                    except Exception as err:
                        results.append(err)
        # 3. postprocess: the translations into the batch, failures with their reason
        pixels = list(batch["pixels"])
        shapes = {k: list(batch[k]) for k in ("h", "w", "c")}
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, Exception):
                reasons[i] = f"translation failed: {type(result).__name__}: {result}"
                pixels[i], shapes["h"][i], shapes["w"][i] = b"", 0, 0
                continue
            pixels[i], shapes["h"][i], shapes["w"][i], shapes["c"][i] = pack(result)
        out["pixels"] = np.asarray(pixels, dtype=object)
        out["reason"] = np.asarray(reasons, dtype=object)
        for k, v in shapes.items():
            out[k] = np.asarray(v, dtype=np.int64)
        return out


class ReadTranslateWrite(Translator):
    """CPU actors: read and decode, translate, encode and write, one after the other.

    On a CPU the forward keeps every core busy. Decode and write tasks beside it preempt
    torch's threads, which then wait for each other at every layer, and they start worker
    processes of their own; in series inside the actor they cost only their own few percent.
    (With GPUs they run as tasks beside the actors, overlapping the forward.)
    """

    def __init__(
        self,
        model: dict[str, Any],
        runtime: Runtime,
        read_args: dict[str, Any],
        write_args: dict[str, Any],
    ) -> None:
        super().__init__(model, runtime)
        self.read_args, self.write_args = read_args, write_args

    def __call__(self, batch: Batch) -> Batch:
        translated = super().__call__(read_and_decode(batch, **self.read_args))
        return encode_and_write(translated, **self.write_args)
