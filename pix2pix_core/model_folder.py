"""A saved generator as a folder: what a registered model carries and a server loads.

    FOLDER/
      generator.pt     `save_generator` bytes: the state dict, its config, and `settings`
      generator.json   the same config and settings, readable without torch

`settings` says how to run the generator: `crop_size` (the side it was trained on) and
`eval_mode` (its test-time semantics), plus whatever lineage the caller records.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from pix2pix_core.checkpoint import load_generator, save_generator
from pix2pix_core.networks import GeneratorConfig

ARTIFACT = "generator"  # the folder's key among a registered MLflow model's artifacts
WEIGHTS_FILE = "generator.pt"
SETTINGS_FILE = "generator.json"


def write_model_folder(
    folder: str, module: nn.Module, config: GeneratorConfig, settings: dict[str, Any]
) -> None:
    """Write the generator and its `settings` (JSON-able) into `folder`."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, WEIGHTS_FILE), "wb") as f:
        f.write(save_generator(module, config, settings))
    with open(os.path.join(folder, SETTINGS_FILE), "w") as f:
        json.dump({"generator": config.to_dict(), **settings}, f, indent=2, sort_keys=True)


def read_model_folder(
    folder: str, device: str | torch.device = "cpu"
) -> tuple[nn.Module, GeneratorConfig, dict[str, Any]]:
    """(generator in train mode, its config, its settings) from `write_model_folder`'s."""
    with open(os.path.join(folder, WEIGHTS_FILE), "rb") as f:
        module, config, _ = load_generator(f.read(), device=device)
    with open(os.path.join(folder, SETTINGS_FILE)) as f:
        settings = json.load(f)
    settings.pop("generator", None)
    return module, config, settings
