"""Training checkpoints in storage: one folder per epoch in the run folder.

    RUN_FOLDER/epoch_0007/
      checkpoint.pt     pix2pix_core.save_checkpoint: G, D, both optimizers and schedulers,
                        the network configs as JSON, and `extra` (below); read with
                        weights_only=True
      checkpoint.json   the same `extra`, readable without torch

`extra` holds epoch, step, the validation metrics of that epoch, the dataset URL and
fingerprint, crop_size, eval_mode (the inference mode it was validated in), the run name
and all options: the checkpoint alone rebuilds the generator and says how to run it
(`pix2pix_core.load_generator(bytes)`, or `pipelines.common.models.load_generator_from_uri(URL)`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from pipelines.common.errors import UserError
from pipelines.common.names import File
from pipelines.common.storage import Location
from pix2pix_core import Pix2Pix, load_checkpoint, save_checkpoint
from pix2pix_core import load_generator as generator_from_bytes

CHECKPOINT_FILE, META_FILE = File.CHECKPOINT, File.CHECKPOINT_META


def write(directory: str, model: Pix2Pix, extra: dict[str, Any]) -> None:
    """Write `model`'s full training state and `extra` into a local `directory`."""
    with open(os.path.join(directory, CHECKPOINT_FILE), "wb") as f:
        f.write(save_checkpoint(model, extra))
    with open(os.path.join(directory, META_FILE), "w") as f:
        json.dump(extra, f, indent=2, sort_keys=True)


def read_ray_checkpoint(checkpoint) -> bytes:  # checkpoint: ray.train.Checkpoint
    """The checkpoint.pt bytes of a Ray Train checkpoint (local or remote)."""
    with (
        checkpoint.as_directory() as directory,
        open(os.path.join(directory, CHECKPOINT_FILE), "rb") as f,
    ):
        return f.read()


def checkpoint_file(url: str, storage_options: dict[str, Any] | None = None) -> Location:
    """The checkpoint.pt of a checkpoint folder URL (or the file's own URL), which exists."""
    loc = Location.parse(url, storage_options)
    if not loc.exists():
        raise UserError(f"no checkpoint at {loc.url}")
    if loc.fs.isdir(loc.path):
        loc = loc.join(CHECKPOINT_FILE)
        if not loc.exists():
            raise UserError(f"{loc.url} not found: not a checkpoint folder of `pix2pix train`")
    return loc


def read_url(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """checkpoint.pt bytes from a checkpoint folder URL (or the file's own URL)."""
    return checkpoint_file(url, storage_options).read_bytes()


def restore(model: Pix2Pix, data: bytes, where: str) -> dict[str, Any]:
    """Load a training checkpoint's state into `model` (built with this run's settings and
    device); returns the checkpoint's `extra`."""
    try:
        saved, extra = load_checkpoint(data, device="cpu")
        model.load_state_dict(saved.state_dict())
    except (ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"{where}: cannot resume from this checkpoint: {err}") from None
    return extra


def read_meta(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """checkpoint.json of a checkpoint folder (epoch, metrics, dataset, options)."""
    return Location.parse(url, storage_options).join(META_FILE).read_json()


def load_generator(
    url: str, storage_options: dict[str, Any] | None = None, device: str = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The generator of a checkpoint folder and its `extra`, from the checkpoint alone."""
    module, _, extra = generator_from_bytes(read_url(url, storage_options), device=device)
    return module, extra
