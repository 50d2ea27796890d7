"""What the driver settles before any worker starts: the checks, the run's name and folder,
its MLflow run.

A run is named by what it learns: `<dataset>-<8 hex>` of the settings marked `learns` and
the dataset's fingerprint, unless `--run_name` is given. Rerunning the same command finds
the same folder and continues it; a rerun with other learned settings is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

import ray
import torch

from pipelines.common.checkpoints import checkpoint_file
from pipelines.common.cluster import require_shared
from pipelines.common.dataset import (
    COLORIZATION_CHANNELS,
    dataset_mode,
    prepared_preprocess,
    read_info,
    stored_train_sizes,
)
from pipelines.common.errors import UserError
from pipelines.common.names import File, Tag
from pipelines.common.ray_runtime import init_ray
from pipelines.common.storage import Location
from pipelines.common.text import count
from pipelines.common.tracking import git_commit, open_run, resolve_tracking_uri
from pipelines.config.fields import default_of
from pipelines.config.groups import ArchitectureOptions, CommonOptions
from pipelines.train.options import TrainConfig, TrainOptions
from pix2pix_core import build_discriminator
from pix2pix_core.geometry import crops
from pix2pix_core.training import sync_batch_norm_runs_on

_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, kw_only=True)
class TrainRun:
    """A training run, planned: where it lives, what it trains on, how it runs."""

    name: str
    storage: Location  # STORAGE_PATH
    folder: Location  # STORAGE_PATH/RUN_NAME
    data: Location
    dataset: dict[str, Any]  # dataset.json of the prepared data
    config: TrainConfig
    tracking_uri: str
    experiment_id: str
    mlflow_run_id: str
    use_gpu: bool
    cpus_per_worker: float
    fault_hook: dict[str, Any] | None = None  # tests: see faults.py

    @property
    def fingerprint(self) -> str:
        return str(self.dataset.get("fingerprint", ""))


def identity(cfg: TrainConfig, fingerprint: str) -> dict[str, Any]:
    """What a run learns from: its learned settings and the data's fingerprint."""
    return {"settings": cfg.learned(), "dataset_fingerprint": fingerprint}


def derive_run_name(data: Location, cfg: TrainConfig, fingerprint: str) -> str:
    """`<dataset name>-<8 hex>`: the same settings on the same data give the same name."""
    text = json.dumps(identity(cfg, fingerprint), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", data.name).strip("-") or "pix2pix"
    return f"{stem}-{digest}"


def check_run_name(name: str, flag: str = "--run_name") -> str:
    """A run name names a folder: letters, digits, '.', '_', '-'."""
    if not _RUN_NAME.fullmatch(name):
        raise UserError(
            f"{flag} {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)"
        )
    return name


# -- checks ------------------------------------------------------------------------------


def data_location(cfg: TrainConfig, storage_options: dict[str, Any]) -> Location:
    """The prepared dataset of --data, which is required, and readable."""
    if not cfg.train.data:
        raise UserError("--data is required: the prepared dataset (DST of `pix2pix prepare`)")
    data = Location.parse(cfg.train.data, storage_options)
    data.check_access("--data")
    return data


def dataset_channels(cfg: TrainConfig, dataset: dict[str, Any], data: Location) -> TrainConfig:
    """`cfg` with the channels the prepared data makes: colorization's L -> ab where the
    flags left the defaults, or a message when they ask for what the data cannot give."""
    arch = cfg.architecture
    asked = (arch.input_nc, arch.output_nc)
    flags = f"--input_nc {asked[0]} --output_nc {asked[1]}"
    if dataset_mode(dataset) == "colorization":
        defaults = tuple(default_of(ArchitectureOptions, n) for n in ("input_nc", "output_nc"))
        if asked == defaults:
            input_nc, output_nc = COLORIZATION_CHANNELS
            return cfg.replace(input_nc=input_nc, output_nc=output_nc)
        if asked != COLORIZATION_CHANNELS:
            raise UserError(
                f"{data.url} was prepared with --dataset_mode colorization, which learns the "
                f"colour (ab) from the lightness (L): train with --input_nc 1 --output_nc 2 "
                f"(or leave them unset), not {flags}"
            )
    elif not set(asked) <= {1, 3}:
        raise UserError(
            f"{flags}: the pairs of {data.url} are 1- or 3-channel images; colorization's "
            "--input_nc 1 --output_nc 2 needs data prepared with --dataset_mode colorization"
        )
    return cfg


def check_data(cfg: TrainConfig, dataset: dict[str, Any], data: Location) -> TrainConfig:
    """Stop with a message if the prepared `dataset` cannot train these settings; else
    `cfg` with the channels the data makes (`dataset_channels`)."""
    cfg = dataset_channels(cfg, dataset, data)
    counts = dataset.get("counts", {})
    for split in ("train", "val"):
        if not counts.get(split):
            raise UserError(
                f"{data.url} has no {split} pairs (counts: {counts}); training needs both "
                "(prepare carves val from train with --val_fraction)"
            )
    crop = cfg.train.crop_size
    load_size = int(dataset.get("load_size") or 0)
    preprocess = prepared_preprocess(dataset)
    for flag, asked, prepared in (
        ("--load_size", cfg.train.load_size, load_size),
        ("--preprocess", cfg.train.preprocess, preprocess),
    ):
        if asked and prepared and asked != prepared:
            raise UserError(
                f"{flag} {asked}: the images of {data.url} were prepared with {flag} "
                f"{prepared}; to train with {asked}, prepare again: pix2pix prepare SRC DST "
                f"{flag} {asked}"
            )
    sizes = {(load_size, load_size)} if preprocess == "resize_and_crop" else None
    sizes = sizes or stored_train_sizes(data)
    if len(sizes) > 1 and cfg.train.batch_size > 1:
        raise UserError(
            f"the train images of {data.url} have {len(sizes)} sizes (--preprocess "
            f"{preprocess} keeps the sources' own), so they cannot share a batch: train with "
            f"--batch_size 1 (got {cfg.train.batch_size})"
        )
    if not crops(preprocess):
        _check_uncropped(cfg, preprocess, sizes, data)
    elif crop > min(min(size) for size in sizes):
        smallest = min(min(size) for size in sizes)
        raise UserError(
            f"--crop_size {crop} is larger than the prepared images of {data.url} "
            f"({smallest} px); prepare with --load_size >= {crop}"
        )
    check_shapes(cfg)
    return cfg


def _check_uncropped(
    cfg: TrainConfig, preprocess: str, sizes: set[tuple[int, int]], data: Location
) -> None:
    """Without a crop the images train at their stored sizes: one to a batch, each a size
    the generator takes."""
    if cfg.train.batch_size > 1:
        raise UserError(
            f"--preprocess {preprocess} keeps each image's own size, so images cannot "
            f"share a batch: train with --batch_size 1 (got {cfg.train.batch_size})"
        )
    multiple = cfg.generator_config().multiple
    odd = sorted(size for size in sizes if size[0] % multiple or size[1] % multiple)
    if odd:
        raise UserError(
            f"--preprocess {preprocess}: {data.url} holds train images of {odd[0][0]} x "
            f"{odd[0][1]}, which {cfg.architecture.netG} cannot take (sides must be multiples "
            f"of {multiple}); prepare with --preprocess resize_and_crop, or another --netG"
        )


def check_shapes(cfg: TrainConfig) -> None:
    """The crops must fit both networks: the U-Net halves them `depth` times, and the
    PatchGAN's convolutions need room and each normalised layer more than one value per
    channel. The discriminator runs on shapes alone (the meta device)."""
    crop, batch = cfg.train.crop_size, cfg.train.batch_size
    generator = cfg.generator_config()
    if crop % generator.multiple:
        arch = cfg.architecture
        raise UserError(
            f"--crop_size {crop} must be divisible by 2^{generator.depth} = {generator.multiple} "
            f"for {arch.netG} (num_downs {arch.num_downs}), which halves its input "
            f"{generator.depth} times"
        )
    d = cfg.discriminator_config()
    try:
        with torch.device("meta"):
            build_discriminator(d)(torch.empty(batch, d.input_nc, crop, crop))
    except (RuntimeError, ValueError) as err:
        raise UserError(
            f"--crop_size {crop} is too small for the {d.receptive_field}x{d.receptive_field} "
            f"PatchGAN (--netD {d.kind}) at --batch_size {batch}: {str(err).splitlines()[0]}"
        ) from None


def _existing(url: str | None, storage_options: dict[str, Any], flag: str) -> str | None:
    """`url` as an absolute URL (workers run in other folders), which must exist."""
    if not url:
        return None
    loc = Location.parse(url, storage_options)
    if not loc.exists():
        raise UserError(f"{flag} {url}: not found")
    return loc.url


def _resume_checkpoint(url: str | None, storage_options: dict[str, Any]) -> str | None:
    """--resume_from's checkpoint.pt as an absolute URL, which exists."""
    if not url:
        return None
    try:
        return checkpoint_file(url, storage_options).url
    except UserError as err:
        raise UserError(f"--resume_from {url}: {err}") from None


def _check_resumable(previous: dict[str, Any], current: dict[str, Any], folder: Location):
    """A rerun must train the same thing it resumes; name what changed otherwise."""
    old = previous.get("identity", {})
    if old.get("dataset_fingerprint") != current["dataset_fingerprint"]:
        raise UserError(
            f"run {folder.url} was trained on other data (fingerprint "
            f"{old.get('dataset_fingerprint')} vs {current['dataset_fingerprint']}); "
            "choose another --run_name"
        )
    before = old.get("settings", {})
    changed = [
        f"{k}: {before.get(k)!r} -> {v!r}"
        for k, v in current["settings"].items()
        if before.get(k) != v
    ]
    if changed:
        raise UserError(
            f"run {folder.url} exists with other settings ({'; '.join(changed)}); "
            "rerun with its settings to resume it, or choose another --run_name"
        )


def worker_resources(opts: TrainOptions) -> tuple[bool, float]:
    """GPU per worker when the cluster has enough of them; a CPU share that fits a laptop.

    Workers take a fractional CPU by default: on a 2-core machine whole CPUs for the
    workers leave Ray Data none, and training waits forever for its input
    (docs/design.md#fractional-cpus-per-ray-train-worker). The share is a scheduling
    reservation; each worker sizes its torch threads to the cores it has.
    """
    gpus = ray.cluster_resources().get("GPU", 0)
    use_gpu = opts.use_gpu
    if use_gpu is None:
        use_gpu = gpus >= opts.num_workers
    elif use_gpu and gpus < opts.num_workers:
        # Ray Train waits for them without a word: an autoscaling cluster adds GPU nodes,
        # a local Ray never will.
        print(
            f"--use_gpu: waiting for {count(opts.num_workers, 'GPU')}, the cluster has "
            f"{gpus:g} now (an autoscaling cluster adds GPU nodes; on this machine alone, stop "
            "with Ctrl-C and drop --use_gpu)",
            file=sys.stderr,
            flush=True,
        )
    cpus = opts.cpus_per_worker or (1.0 if use_gpu else 0.5)
    return bool(use_gpu), float(cpus)


# -- the plan ----------------------------------------------------------------------------


def plan_run(
    cfg: TrainConfig,
    common: CommonOptions,
    *,
    parent_run_id: str | None = None,
    mlflow_run_id: str | None = None,
    ray_address: str | None = None,
) -> TrainRun:
    """Check the settings and the data, name the run, and open its MLflow run (driver only).

    `parent_run_id` nests the run under it (a Tune trial under the sweep's run);
    `mlflow_run_id` logs into an existing run instead of creating one.
    """
    cfg.validate()
    opts = cfg.train
    data = data_location(cfg, common.storage_options)
    dataset = read_info(data)
    fid = _existing(opts.fid_weights, common.storage_options, "--fid_weights")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(opts, data=data.url, fid_weights=fid))
    cfg = check_data(cfg, dataset, data)
    resume = _resume_checkpoint(opts.resume_from, common.storage_options)
    cfg = cfg.replace(resume_from=resume)
    fingerprint = str(dataset.get("fingerprint", ""))
    name = check_run_name(common.run_name or derive_run_name(data, cfg, fingerprint))
    require_shared(cfg.flat() | dataclasses.asdict(common), ray_address)
    storage = Location.parse(common.storage_path, common.storage_options)
    storage.check_access("--storage_path", write=True)
    folder = storage.join(name)
    init_ray(ray_address)
    use_gpu, cpus = worker_resources(cfg.train)
    if (
        cfg.architecture.norm == "syncbatch"
        and opts.num_workers > 1
        and not sync_batch_norm_runs_on("cuda" if use_gpu else "cpu")
    ):
        raise UserError(
            "--norm syncbatch needs GPUs with several workers; on CPUs use --norm batch "
            "(each worker's own statistics)"
        )

    current = identity(cfg, fingerprint)
    run_file = folder.join(File.RUN)
    previous = run_file.read_json() if run_file.exists() else None
    if previous is not None:
        _check_resumable(previous, current, folder)
    tracking_uri = resolve_tracking_uri(common.tracking_uri)
    tracked = open_run(
        tracking_uri,
        common.experiment,
        name,
        params=cfg.flat() | {"run_name": name, "storage_path": common.storage_path},
        tags={
            Tag.DATASET: data.url,
            Tag.DATASET_FINGERPRINT: fingerprint,
            Tag.RUN_FOLDER: folder.url,
        },
        resume_run_id=mlflow_run_id or (previous or {}).get("mlflow_run_id"),
        parent_run_id=parent_run_id,
    )
    folder.makedirs()
    run_file.write_json(
        {
            "run_name": name,
            "dataset": data.url,
            "identity": current,
            "options": cfg.flat(),
            "mlflow_run_id": tracked.run_id,
            "experiment_id": tracked.experiment_id,
            "tracking_uri": tracking_uri,
            "git_commit": git_commit(),
        }
    )
    return TrainRun(
        name=name,
        storage=storage,
        folder=folder,
        data=data,
        dataset=dataset,
        config=cfg,
        tracking_uri=tracking_uri,
        experiment_id=tracked.experiment_id,
        mlflow_run_id=tracked.run_id,
        use_gpu=use_gpu,
        cpus_per_worker=cpus,
    )
