"""Load a generator from wherever one lives: the registry, a run, storage, or the official code.

`load_generator_from_uri` takes

- an MLflow model URI: `models:/NAME@alias`, `models:/NAME/3`, `runs:/RUN_ID/model`, ...
  (a model logged by `pix2pix register`);
- a checkpoint URL of this project (any fsspec URL): a saved generator or a training
  checkpoint file, a checkpoint folder (`.../epoch_0005`), or a run folder holding
  `epoch_*` checkpoints (its best one if the run finished and says so in `result.json`,
  else the latest);
- an official pytorch-CycleGAN-and-pix2pix state dict (`*_net_G.pth`), whose architecture
  is `official` (default: the official defaults, `unet_256`, batch norm, dropout).

Every path ends in `pix2pix_core.checkpoint`, which reads with `weights_only=True`.
MLflow is imported only for MLflow URIs: it takes seconds, which every file-model
`translate` and `evaluate` would otherwise pay.
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pipelines.common.dataset import COLORIZATION_CHANNELS, Channels, decoded_channels
from pipelines.common.errors import UserError
from pipelines.common.names import File, judged
from pipelines.common.storage import Location
from pix2pix_core import GeneratorConfig
from pix2pix_core.checkpoint import load_generator, load_official_generator
from pix2pix_core.inference import TestTimeGenerator, from_state_dict
from pix2pix_core.model_folder import ARTIFACT, read_model_folder

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
OFFICIAL_SUFFIX = "_net_G.pth"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
_EPOCH = re.compile(r"epoch_(\d+)")


@dataclass(frozen=True)
class LoadedGenerator:
    """A generator ready to run, with what is known about where it came from.

    `eval_mode`: True runs it like the official `--eval` (dropout off, batch-norm running
    statistics); False like the paper (dropout on, statistics of the batch). The default is
    what the model was trained and validated with. `metadata` holds `source` (the URI it
    was loaded from), `crop_size`, and whatever its checkpoint or registry entry recorded
    (source run, dataset fingerprint, validation metrics, ...).
    """

    module: torch.nn.Module
    config: GeneratorConfig
    eval_mode: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def crop_size(self) -> int:
        """The image side the generator was trained on."""
        return int(self.metadata.get("crop_size") or self.config.default_crop_size)

    def for_test(self, *, eval_mode: bool | None = None, seed: int = 0) -> TestTimeGenerator:
        """The generator with its recorded test-time semantics (or `eval_mode`), on this
        module's tensors and device; the module itself is left as it is."""
        mode = self.eval_mode if eval_mode is None else eval_mode
        return from_state_dict(self.config, self.module.state_dict(), eval_mode=mode, seed=seed)

    @property
    def preprocess(self) -> str:
        """How training resized its sources (prepare's --preprocess), by default the paper's."""
        return str(self.metadata.get("preprocess") or "resize_and_crop")

    @property
    def load_size(self) -> int | None:
        """The side training resized its sources to before cropping (prepare's load_size),
        if the model recorded it: the scale translate feeds it at by default."""
        value = self.metadata.get("load_size")
        return int(value) if value else None

    @property
    def dataset_mode(self) -> str:
        """What it was trained on (prepare's --dataset_mode): aligned pairs by default."""
        return str(self.metadata.get("dataset_mode") or "aligned")

    @property
    def colorization(self) -> bool:
        """Whether it colours RGB pictures: its input is their lightness L, its output the
        colour ab, shown back in RGB (pix2pix_core.color)."""
        return self.dataset_mode == "colorization"

    @property
    def image_channels(self) -> Channels:
        """The channels of the images it takes and gives (RGB both ways for colorization)."""
        return decoded_channels(self.config.input_nc, self.config.output_nc, self.colorization)

    @property
    def multiple(self) -> int:
        """Image sides must be divisible by this to run through the generator."""
        return self.config.multiple


def resolve_device(name: str) -> str:
    """A `--device` value checked against this machine; "auto" is CUDA where torch sees a GPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(
            f"--device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: torch sees no CUDA GPU here; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                f"numbered from 0"
            )
    return name


def load_generator_from_uri(
    uri: str,
    *,
    storage_options: Mapping[str, Any] | str | None = None,
    official: GeneratorConfig | None = None,
    tracking_uri: str | None = None,
    device: str | torch.device = "cpu",
) -> LoadedGenerator:
    """The generator at `uri` (see the module docstring for what `uri` may be).

    `official`: the architecture to read `uri` with as an official state dict (see
    `official_architecture`). `tracking_uri`: the MLflow store of an MLflow URI, resolved
    as every verb resolves `--tracking_uri` (unset: $MLFLOW_TRACKING_URI, else
    sqlite:///mlflow.db).
    """
    if not uri:
        raise UserError("no model given")
    if uri.startswith(MLFLOW_SCHEMES):
        loaded = _from_mlflow(uri, tracking_uri)
    else:
        loaded = _from_storage(Location.parse(uri, storage_options), official)
    loaded.module.to(device)
    return loaded


# -- MLflow -------------------------------------------------------------------------------


def official_architecture(
    uri: str, architecture: GeneratorConfig, given: bool
) -> GeneratorConfig | None:
    """`architecture` where `uri` is to be read as an official state dict (which carries no
    config): a file named like the official ones (`latest_net_G.pth`), or any file when an
    architecture flag was `given`. None for MLflow URIs and this project's checkpoints,
    which carry their own config."""
    if uri.startswith(MLFLOW_SCHEMES):
        return None
    return architecture if given or uri.endswith(OFFICIAL_SUFFIX) else None


def _from_mlflow(uri: str, tracking_uri: str | None) -> LoadedGenerator:
    # MLflow only here: its import takes seconds, which file models need not pay.
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipelines.common.tracking import resolve_tracking_uri

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        except MlflowException as err:
            hint = ""
            if re.fullmatch(r"models:/[^/@]+", uri):  # MLflow reads it as a logged model's ID
                name = uri.removeprefix("models:/")
                hint = f" (a registered model needs a version or an alias: models:/{name}/1, "
                hint += f"models:/{name}@champion)"
            raise UserError(f"cannot load {uri}: {err.message}{hint}") from None
        try:
            module, config, settings = read_model_folder(_artifact_folder(local, uri))
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise UserError(f"{uri}: not a pix2pix generator model ({err})") from None
    metadata = {**settings.get("metadata", {}), "source": uri}
    recorded = ("crop_size", "load_size", "preprocess", "dataset_mode")
    metadata |= {k: settings.get(k) for k in recorded}
    metadata.update(_registry_metadata(uri))
    return LoadedGenerator(module, config, bool(settings["eval_mode"]), metadata)


def _artifact_folder(local: str, uri: str) -> str:
    """The generator's model folder inside a downloaded pyfunc model."""
    from mlflow.models import Model  # MLflow for MLflow URIs only (see _from_mlflow)

    mlmodel = os.path.join(local, "MLmodel")
    if not os.path.exists(mlmodel):
        raise UserError(f"{uri} is not an MLflow model (no MLmodel file)")
    pyfunc = Model.load(mlmodel).flavors.get("python_function", {})
    artifact = (pyfunc.get("artifacts") or {}).get(ARTIFACT)
    if not artifact:
        raise UserError(f"{uri} is not a pix2pix generator model (no {ARTIFACT!r} artifact)")
    return os.path.join(local, artifact["path"])


def _registry_metadata(uri: str) -> dict[str, Any]:
    """Name, version and tags of a `models:/NAME/VERSION` or `models:/NAME@alias`."""
    match = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w-]+))", uri)
    if not match:
        return {}
    from mlflow import MlflowClient  # MLflow for MLflow URIs only (see _from_mlflow)

    client = MlflowClient()
    name, version, alias = match.groups()
    mv = (
        client.get_model_version_by_alias(name, alias)
        if alias
        else client.get_model_version(name, version)
    )
    return {"registered_name": mv.name, "version": str(mv.version), "tags": dict(mv.tags)}


# -- storage ------------------------------------------------------------------------------


def _from_storage(loc: Location, official: GeneratorConfig | None) -> LoadedGenerator:
    if not loc.exists():
        raise UserError(f"no model at {loc.url}")
    if loc.fs.isdir(loc.path):
        loc = _checkpoint_in_folder(loc)
    data = loc.read_bytes()
    if official is not None or loc.name.endswith(OFFICIAL_SUFFIX):
        config = official or GeneratorConfig()
        try:
            module = load_official_generator(data, config)
        except (RuntimeError, ValueError, KeyError) as err:
            raise UserError(f"{loc.url}: not an official generator for the flags: {err}") from None
        # The official test script runs the generator in train mode unless --eval. An official
        # L -> ab generator (--input_nc 1 --output_nc 2) is a colorization model.
        lab = (config.input_nc, config.output_nc) == COLORIZATION_CHANNELS
        mode = "colorization" if lab else "aligned"
        metadata = {"source": loc.url, "official": True, "dataset_mode": mode}
        return LoadedGenerator(module, config, False, metadata)
    module, config, extra = _read(data, loc.url)
    metadata = {**checkpoint_metadata(extra), "source": loc.url}
    run_id = _training_run_id(loc)
    if run_id:
        metadata.setdefault("source_run_id", run_id)
    return LoadedGenerator(module, config, bool(metadata.get("eval_mode", False)), metadata)


def _checkpoint_in_folder(loc: Location) -> Location:
    """The checkpoint file of a checkpoint folder; for a run folder, its best checkpoint
    (`result.json` of a finished run) or else its latest `epoch_*`."""
    entries = sorted(loc.fs.ls(loc.path, detail=True), key=lambda e: e["name"])
    names = {posixpath.basename(e["name"].rstrip("/")): e["type"] for e in entries}
    weights = [n for n, kind in names.items() if kind == "file" and n.endswith(CHECKPOINT_SUFFIXES)]
    if len(weights) == 1:
        return loc.join(weights[0])
    epochs = sorted(
        (int(m.group(1)), name)
        for name, kind in names.items()
        if kind == "directory" and (m := _EPOCH.fullmatch(name))
    )
    if not weights and epochs:
        if File.RUN_RESULT in names:
            best = loc.join(File.RUN_RESULT).read_json().get("best_checkpoint")
            if best and posixpath.basename(best.rstrip("/")) in names:
                return _checkpoint_in_folder(loc.join(posixpath.basename(best.rstrip("/"))))
        return _checkpoint_in_folder(loc.join(epochs[-1][1]))
    found = ", ".join(weights) or "no checkpoint file"
    raise UserError(f"{loc.url}: expected one checkpoint file or epoch_* folders, found {found}")


def _training_run_id(checkpoint_file: Location) -> str | None:
    """The MLflow run of the training run whose folder holds this checkpoint, if any."""
    run_folder = posixpath.dirname(posixpath.dirname(checkpoint_file.url))
    run_file = Location(posixpath.join(run_folder, File.RUN), checkpoint_file.options)
    try:
        return run_file.read_json().get("mlflow_run_id") if run_file.exists() else None
    except (UserError, ValueError, OSError):
        return None


def _read(data: bytes, where: str) -> tuple[torch.nn.Module, GeneratorConfig, dict[str, Any]]:
    try:
        return load_generator(data)
    except Exception as err:  # a corrupt or foreign file: say which and why
        raise UserError(f"{where}: not a pix2pix checkpoint or generator ({err})") from None


def checkpoint_metadata(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """A checkpoint's `extra` with its validation metrics as `val_metrics` {l1, psnr, ssim}.

    Training checkpoints record `metrics` of their epoch as training reports them (`val_L1`).
    """
    out = dict(extra or {})
    val = judged(out.get("metrics") or {})
    if val and "val_metrics" not in out:
        out["val_metrics"] = val
    return out
