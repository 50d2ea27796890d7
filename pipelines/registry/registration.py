"""`pix2pix register`: log a generator as an MLflow pyfunc model and register a version.

The model takes a batch of RGB images (uint8 N x H x W x 3) and returns the translated
batch in the same form (`pipelines.registry.pyfunc_model`); a colorization model too (RGB
in, its lightness coloured, RGB out). Its artifact holds the state dict and
its JSON config; it carries `pix2pix_core` as code, so loading it needs torch and MLflow,
not Ray. The new version is tagged with its lineage: the training run, the dataset
fingerprint, the validation metrics and the git commit of the code that registered it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import Schema, TensorSpec

import pix2pix_core
from pipelines.common.dataset import read_info
from pipelines.common.errors import UserError
from pipelines.common.models import (
    MLFLOW_SCHEMES,
    LoadedGenerator,
    load_generator_from_uri,
    official_architecture,
)
from pipelines.common.names import Tag, judged
from pipelines.common.storage import Location
from pipelines.common.tracking import git_commit, open_run, resolve_tracking_uri, setup_mlflow
from pipelines.config.fields import option
from pipelines.config.groups import (
    ArchitectureOptions,
    ExperimentOptions,
    StorageOptions,
    TrackingOptions,
)
from pipelines.config.loader import add_options, given, load_options
from pipelines.registry import pyfunc_model
from pipelines.registry.evaluation import evaluate
from pix2pix_core.model_folder import ARTIFACT, write_model_folder

MODEL_NAME_IN_RUN = "model"
INPUT_EXAMPLE_SIDE = 64


def model_signature(channels: tuple[int, int]) -> ModelSignature:
    """uint8 N x H x W x channels[0] in, N x H x W x channels[1] out; any N, H, W."""
    inputs = TensorSpec(np.dtype(np.uint8), (-1, -1, -1, channels[0]))
    outputs = TensorSpec(np.dtype(np.uint8), (-1, -1, -1, channels[1]))
    return ModelSignature(inputs=Schema([inputs]), outputs=Schema([outputs]))


def input_example(channels: int = 3) -> np.ndarray:
    """One small smooth image: cheap to store, and valid for every model size."""
    ramp = np.linspace(0, 255, INPUT_EXAMPLE_SIDE, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 255 - ramp[:, None]), -1)
    return image.astype(np.uint8)[None, ..., :channels]


def pip_requirements() -> list[str]:
    """What the model needs at load time: the packages `pix2pix_core` and the pyfunc import."""
    names = ["mlflow", "torch", "numpy", "torchmetrics", "pillow"]
    return [f"{n}=={version(n).split('+')[0]}" for n in names]


def _checkpoint_of_run(run: Any) -> str:
    """The best checkpoint of a finished training run, else its run folder (latest epoch)."""
    url = run.data.tags.get(Tag.BEST_CHECKPOINT) or run.data.tags.get(Tag.RUN_FOLDER)
    if not url:
        raise UserError(
            f"run {run.info.run_id} records no checkpoint (tag {Tag.BEST_CHECKPOINT}); "
            "give --checkpoint URL"
        )
    return url


def _run_or_none(client: MlflowClient, run_id: str | None) -> Any:
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def _val_metrics_of_run(run: Any) -> dict[str, float]:
    """The run's last validation metrics as {l1, psnr, ssim}."""
    return judged(run.data.metrics) if run is not None else {}


@dataclass(frozen=True)
class Lineage:
    """What a registered version records about where it came from."""

    source: str
    source_run_id: str | None
    dataset_fingerprint: str | None
    val_metrics: Mapping[str, float]

    def tags(self) -> dict[str, str]:
        tags = {
            "source": self.source,
            "source_run_id": self.source_run_id or "",
            "dataset_fingerprint": self.dataset_fingerprint or "",
            Tag.GIT_COMMIT: git_commit() or "",
        }
        tags.update({f"val_{k}": repr(float(v)) for k, v in self.val_metrics.items()})
        return tags


def write_model_files(folder: str, loaded: LoadedGenerator, lineage: Lineage) -> None:
    """The `generator` artifact: the generator and how to run it (pix2pix_core.model_folder)."""
    settings = {
        "crop_size": loaded.crop_size,
        "load_size": loaded.load_size,
        "preprocess": loaded.preprocess,
        "dataset_mode": loaded.dataset_mode,
        "eval_mode": loaded.eval_mode,
        "metadata": {
            "source": lineage.source,
            "source_run_id": lineage.source_run_id,
            "dataset_fingerprint": lineage.dataset_fingerprint,
            "val_metrics": dict(lineage.val_metrics),
        },
    }
    write_model_folder(folder, loaded.module, loaded.config, settings)


def log_generator_model(loaded: LoadedGenerator, lineage: Lineage, run_id: str) -> str:
    """Log the pyfunc model into `run_id` (and its experiment's artifact store); returns
    its model URI. The run's status is left as it is."""
    client = MlflowClient()
    # Created explicitly: left to `Model.log`, the model would go to the active experiment
    # (the default one in a plain process), not to the run's.
    model = mlflow.initialize_logged_model(
        name=MODEL_NAME_IN_RUN,
        source_run_id=run_id,
        tags=lineage.tags(),
        experiment_id=client.get_run(run_id).info.experiment_id,
    )
    core_dir = os.path.dirname(os.path.abspath(pix2pix_core.__file__))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, ARTIFACT)
            write_model_files(folder, loaded, lineage)
            info = Model.log(
                artifact_path=None,
                name=MODEL_NAME_IN_RUN,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=model.model_id,
                python_model=os.path.abspath(pyfunc_model.__file__),
                artifacts={ARTIFACT: folder},
                code_paths=[core_dir],
                signature=model_signature(loaded.image_channels),
                input_example=input_example(loaded.image_channels[0]),
                pip_requirements=pip_requirements(),
            )
    except BaseException:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return info.model_uri


def register(
    name: str,
    checkpoint: str | None = None,
    *,
    run_id: str | None = None,
    storage_options: Mapping[str, Any] | str | None = None,
    official: pix2pix_core.GeneratorConfig | None = None,
    data: Location | str | None = None,
    val_metrics: Mapping[str, float] | None = None,
    dataset_fingerprint: str | None = None,
    eval_mode: bool | None = None,
    experiment: str = "pix2pix",
    batch_size: int = 16,
    tracking_uri: str | None = None,
) -> ModelVersion:
    """Log the generator at `checkpoint` (or the checkpoint of training run `run_id`) as a
    pyfunc model and register it as a new version of `name`.

    The model is logged into the training run when that run is in this tracking store
    (`run_id`, or the run recorded next to the checkpoint), otherwise into a new run of
    `experiment`. Validation metrics: `val_metrics`, else measured on the `val` split of
    `data`, else those the checkpoint recorded for its epoch, else the run's last `val_*`.
    `tracking_uri` None keeps MLflow's current tracking URI (set it with
    `pipelines.common.tracking.setup_mlflow` or `mlflow.set_tracking_uri`).
    """
    if not name:
        raise UserError("--name is required")
    if "/" in name or ":" in name:  # MLflow's rule, checked before anything is logged
        raise UserError(f"--name {name!r}: a registered model's name cannot contain '/' or ':'")
    # What storage it reads, checked before MLflow is asked anything.
    if checkpoint is not None and not checkpoint.startswith(MLFLOW_SCHEMES):
        Location.parse(checkpoint, storage_options).check_access("--checkpoint")
    if data is not None and not isinstance(data, Location):
        data = Location.parse(data, storage_options)
    if data is not None:
        data.check_access("--data")
    if tracking_uri is not None:
        setup_mlflow(tracking_uri, experiment)
    client = MlflowClient()
    run = _run_or_none(client, run_id)
    if run_id and run is None:
        raise UserError(f"no MLflow run {run_id} at {mlflow.get_tracking_uri()}")
    if checkpoint is None:
        if run is None:
            raise UserError("give --checkpoint URL or --run RUN_ID")
        checkpoint = _checkpoint_of_run(run)
    loaded = load_generator_from_uri(checkpoint, storage_options=storage_options, official=official)
    if eval_mode is not None:
        loaded = LoadedGenerator(loaded.module, loaded.config, eval_mode, loaded.metadata)
    meta = loaded.metadata
    if run is None:
        run = _run_or_none(client, meta.get("source_run_id"))

    # Metrics: given, else measured now on --data, else the checkpoint's epoch, else the run's.
    if val_metrics is None and data is not None:
        val_metrics = evaluate(loaded, data, "val", batch_size=batch_size)
    if val_metrics is None:
        val_metrics = meta.get("val_metrics") or _val_metrics_of_run(run)
    # The fingerprint of the data the model was trained on, as far as it is known.
    fingerprint = (
        dataset_fingerprint
        or meta.get("dataset_fingerprint")
        or (run.data.tags.get(Tag.DATASET_FINGERPRINT) if run is not None else None)
        or (read_info(data).get("fingerprint") if data is not None else None)
    )
    lineage = Lineage(
        source=checkpoint,
        source_run_id=run.info.run_id if run is not None else meta.get("source_run_id"),
        dataset_fingerprint=fingerprint,
        val_metrics=judged(val_metrics),
    )

    if run is not None:
        model_uri = log_generator_model(loaded, lineage, run.info.run_id)
    else:
        tracked = open_run(
            mlflow.get_tracking_uri(), experiment, f"register-{name}", tags={Tag.VERB: "register"}
        )
        model_uri = log_generator_model(loaded, lineage, tracked.run_id)
        client.set_terminated(tracked.run_id, status="FINISHED")
    return mlflow.register_model(model_uri, name, tags=lineage.tags())


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RegisterOptions:
    """What to register."""

    name: str | None = option(None, "registered model name", required=True)
    checkpoint: str | None = option(None, "checkpoint URL (file or folder) or *_net_G.pth")
    run: str | None = option(None, "MLflow run id of a training run (its checkpoint is used)")
    data: str | None = option(None, "prepared dataset: evaluate on its val split for the tags")
    eval: bool | None = option(
        None, "serve with dropout off, running statistics; unset: as validated"
    )

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("--name is required")
        if not self.checkpoint and not self.run:
            raise ValueError("give --checkpoint URL or --run RUN_ID")


OPTION_GROUPS = (
    RegisterOptions,
    ArchitectureOptions,
    StorageOptions,
    TrackingOptions,
    ExperimentOptions,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, *OPTION_GROUPS)


def run(args: argparse.Namespace) -> int:
    opts, architecture, storage, tracking, experiment = load_options(args, *OPTION_GROUPS)
    official = official_architecture(
        opts.checkpoint or "", architecture.generator_config(), given(args, ArchitectureOptions)
    )
    mv = register(
        opts.name,
        opts.checkpoint,
        run_id=opts.run,
        storage_options=storage.storage_options,
        official=official,
        data=opts.data,
        eval_mode=opts.eval,
        experiment=experiment.experiment,
        tracking_uri=resolve_tracking_uri(tracking.tracking_uri),
    )
    metrics = ", ".join(f"{k}={v}" for k, v in mv.tags.items() if k.startswith("val_"))
    print(f"registered {mv.name} version {mv.version} ({metrics or 'no val metrics'})")
    return 0
