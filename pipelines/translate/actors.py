"""The model stage of `pix2pix translate`: a Ray Data callable class, one per actor.

`__init__` builds the generator once from weights in the object store (the driver loaded
and checked them); `__call__` translates a batch under `torch.inference_mode()`, with the
tiles of all its images batched together (pix2pix_core.tiling).

The generator runs with the test-time semantics the model recorded (`eval_mode`), through
`pix2pix_core.inference`, the path validation and evaluation take too: an output does not
depend on the images that share its batch.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch

from pipelines.translate.io import Batch, encode_and_write, pack, read_and_decode, unpack
from pix2pix_core import GeneratorConfig
from pix2pix_core.inference import (
    TestTimeGenerator,
    from_state_dict,
    sample_seeds,
    translate_uint8,
)
from pix2pix_core.memory import retain_freed_memory
from pix2pix_core.precision import flush_denormals, native_bf16


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
    colorization: bool = False  # RGB in, its lightness coloured, RGB out

    def uses_autocast(self) -> bool:
        """Decided where the model runs: a cluster's nodes may differ."""
        return native_bf16(self.device) if self.autocast is None else self.autocast


def prepare_generator(
    config: GeneratorConfig, state_dict: dict[str, torch.Tensor], runtime: Runtime
) -> TestTimeGenerator:
    """The test-time generator (pix2pix_core.inference) on `runtime`'s device and layout."""
    model = from_state_dict(config, state_dict, eval_mode=runtime.eval_mode)
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
        flush_denormals()  # before any torch op starts this thread's intra-op threads
        state = model["state_dict"]
        if isinstance(state, ray.ObjectRef):
            state = ray.get(state)
        state = _weights_in_place(state)
        self.runtime = runtime
        self.autocast = runtime.uses_autocast()
        self.model = prepare_generator(GeneratorConfig.from_dict(model["config"]), state, runtime)
        self.model_dropouts = bool(self.model.dropouts)
        if runtime.compile:
            # Tiles have one size: shapes are static but for a last, smaller batch.
            self.model = self.model.compiled(runtime.compile_mode)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        rt = self.runtime
        seeds = sample_seeds(x) if self.model_dropouts else None  # on the host, before the copy
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
            y = self.model(x, seeds)
        return y.float().cpu().contiguous()

    def _translate(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 H x W x C images -> translated uint8 images, one float image at a time."""
        rt = self.runtime
        outputs = translate_uint8(
            self._forward,
            arrays,
            tile=rt.tile,
            overlap=rt.overlap,
            batch_size=rt.batch_size,
            colorization=rt.colorization,
        )
        return list(outputs)

    def __call__(self, batch: Batch) -> Batch:
        flush_denormals()  # a thread-local mode, and Ray may call from another thread
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
