"""`pix2pix translate`: run a generator over an image archive with Ray Data, resumably.

    pix2pix translate --model models:/facades@champion --input s3://archive/ --output s3://out/

The pipeline streams, so memory stays flat however large the archive:

    inputs (driver: list, plan output names, skip what the manifest says is done)
      -> read + decode + resize or keep for tiling     Ray tasks       (translate_io)
      -> generator, tiles batched, inference_mode      actor pool      (translate_model)
      -> resize back, reattach alpha, encode, write    Ray tasks       (translate_io)
         + one manifest part per batch, after its outputs
      -> counts on the driver; the manifest folded into DST/_manifest/manifest.jsonl

With GPUs the tasks overlap the forward. On CPUs, where the forward already uses every
core, each actor reads, translates and writes its batch in series instead (`--io actor`,
ReadTranslateWrite): tasks beside it would preempt torch's threads.

Every input ends as an output or as a failure with a reason (inputs = written + failed);
rerunning the same command skips what is done and retries what failed.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

from pipelines.common.errors import UserError
from pipelines.common.images import DEFAULT_MAX_PIXELS
from pipelines.common.images import OUTPUT_FORMATS as FORMATS
from pipelines.common.progress import progress_for_logs
from pipelines.common.storage import Location
from pipelines.common.text import count, plural
from pipelines.config.options import (
    CommonOptions,
    ModelOptions,
    RayOptions,
    add_options,
    load_options,
    option,
)

SIDES = ("A", "B", "full")
IO_PLACES = ("auto", "tasks", "actor")


@dataclass(frozen=True, kw_only=True)
class TranslateOptions:
    """Translation: what, where, and how."""

    model: str | None = option(
        None,
        "the generator: models:/NAME@ALIAS, models:/NAME/VERSION, a checkpoint URL, or an "
        "official *_net_G.pth (its architecture given by --netG, --ngf, --norm, ...)",
        required=True,
    )
    input: str | None = option(
        None,
        "a folder or prefix (recursive), one image, or a .txt/.csv list of URLs",
        required=True,
    )
    output: str | None = option(
        None, "the folder for outputs and _manifest/ (any fsspec URL)", required=True
    )
    input_side: str = option("full", "for aligned A|B images: translate A or B", choices=SIDES)
    format: str = option("png", "output format", choices=tuple(FORMATS))
    suffix: str = option("", "added to each output's name, e.g. _fake")
    resize: bool = option(False, "resize every image to the model's size and back")
    tile: bool = option(False, "every image at full resolution in overlapping tiles")
    tile_overlap: int | None = option(None, "tile overlap in pixels (default: tile size / 4)")
    eval: bool | None = option(
        None,
        "eval mode: dropout off, batch norm with its running statistics; --no_eval: the "
        "paper's test time, dropout on, each image's own statistics (default: the setting "
        "the model was saved with)",
    )
    batch_size: int = option(8, "images (tiles, for large ones) per forward pass")
    num_actors: int | None = option(
        None,
        "model actors (default: one per GPU; on CPUs, one per core / --num_cpus_per_actor, "
        "as many as the cluster's memory holds)",
    )
    num_gpus_per_actor: float | None = option(None, "GPUs per actor (default: 1 if any, else 0)")
    num_cpus_per_actor: int | None = option(
        None,
        "CPUs (torch threads) per actor (default: 1; on CPUs with --num_actors, the cores "
        "shared among the actors)",
    )
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "larger images are recorded as failed")
    io: str = option(
        "auto",
        "where images are read, decoded, encoded and written: 'tasks' beside the model actors "
        "(overlapping the forward), or in the 'actor', in series with it (default: tasks "
        "with GPUs, actor on CPUs, where the forward already uses every core)",
        choices=IO_PLACES,
    )

    def __post_init__(self) -> None:
        for name in ("model", "input", "output"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        if self.resize and self.tile:
            raise ValueError("--resize and --tile exclude each other; give one (or neither)")
        for name in ("batch_size", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("num_actors", "num_cpus_per_actor"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value!r}")
        if self.num_gpus_per_actor is not None and self.num_gpus_per_actor < 0:
            raise ValueError(f"--num_gpus_per_actor must be >= 0, got {self.num_gpus_per_actor!r}")
        if self.tile_overlap is not None and self.tile_overlap < 0:
            raise ValueError(f"--tile_overlap must be >= 0, got {self.tile_overlap!r}")

    @property
    def mode(self) -> str:
        return "resize" if self.resize else "tile" if self.tile else "auto"


OPTION_GROUPS = (TranslateOptions, ModelOptions, CommonOptions, RayOptions)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, *OPTION_GROUPS)


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


# The flags that describe an official generator's architecture.
ARCHITECTURE_FLAGS = ("netG", "num_downs", "ngf", "norm", "no_dropout", "input_nc", "output_nc")


def _official_config(uri: str, model_opts: ModelOptions, flags_given: set[str]):
    """The architecture of an official generator (a bare state dict carries none).

    Used for files named like the official ones (`latest_net_G.pth`), and for any file when
    an architecture flag is given; a checkpoint of this project carries its own config.
    """
    from pipelines.common.models import MLFLOW_SCHEMES, OFFICIAL_SUFFIX

    if uri.startswith(MLFLOW_SCHEMES):
        return None
    if uri.endswith(OFFICIAL_SUFFIX) or flags_given & set(ARCHITECTURE_FLAGS):
        return model_opts.generator_config()
    return None


def load_model(
    opts: TranslateOptions,
    model_opts: ModelOptions,
    common: CommonOptions,
    flags_given: set[str] = frozenset(),
):
    """The generator, loaded once on the driver: a bad URI stops the command before Ray."""
    from pipelines.common.models import MLFLOW_SCHEMES, load_generator_from_uri

    if opts.model.startswith(MLFLOW_SCHEMES):
        import mlflow

        from pipelines.common.tracking import resolve_tracking_uri

        mlflow.set_tracking_uri(resolve_tracking_uri(common.tracking_uri))
    return load_generator_from_uri(
        opts.model,
        storage_options=common.storage_options,
        official=_official_config(opts.model, model_opts, flags_given),
        device="cpu",
    )


def _tiles(opts: TranslateOptions, loaded: Any) -> tuple[int, int]:
    """The tile (the size the model was trained on, as the U-Net can take it) and overlap."""
    tile = max(loaded.multiple, loaded.crop_size // loaded.multiple * loaded.multiple)
    overlap = opts.tile_overlap if opts.tile_overlap is not None else tile // 4
    if overlap >= tile:
        raise UserError(f"--tile_overlap {overlap} must be smaller than the tile ({tile})")
    return tile, overlap


def _io_in_actor(opts: TranslateOptions, num_gpus: float) -> bool:
    return opts.io == "actor" or (opts.io == "auto" and not num_gpus)


def _eval_mode(opts: TranslateOptions, loaded: Any) -> bool:
    return opts.eval if opts.eval is not None else bool(loaded.eval_mode)


# What a CPU model actor holds besides the model: Python, torch, Ray and Ray Data loaded.
ACTOR_RUNTIME_BYTES = 384 * 2**20
# Activations of a unet_256 forward, per input pixel, with some headroom (about 32 MiB for
# a 256 x 256 tile).
ACTIVATION_BYTES_PER_PIXEL = 512


def actor_bytes(module: Any, batch_size: int, tile: int) -> int:
    """About the memory of one CPU model actor: runtime, weights, one batch of tiles.

    The weights count three times: as received (in the object store, shared by the node's
    actors, so this is on the safe side), as laid out for the forward (batch norm folded,
    channels-last) and in freed memory the allocator keeps for reuse.
    """
    weights = sum(p.numel() * p.element_size() for p in module.parameters())
    return ACTOR_RUNTIME_BYTES + 3 * weights + batch_size * tile * tile * ACTIVATION_BYTES_PER_PIXEL


def cpu_layout(
    cores: int,
    *,
    actors: int | None,
    threads: int | None,
    memory: float | None,
    bytes_per_actor: int,
) -> tuple[int, int]:
    """(actors, torch threads each) for model actors on CPUs.

    By default one single-threaded actor per core: processes that each run a whole forward
    outpace threads that split every layer and wait for each other at its end. Each actor
    holds a copy of the model, so the default count also fits the cluster's memory.
    """
    if actors:
        return actors, threads or max(1, cores // actors)
    threads = threads or 1
    actors = max(1, cores // threads)
    if memory:
        actors = max(1, min(actors, int(memory // bytes_per_actor)))
    return actors, threads


def _runtime(opts: TranslateOptions, model_opts: ModelOptions, loaded: Any):
    """Actors, devices and threads from the flags and what the cluster has."""
    import ray

    from pipelines.common.ray_runtime import cluster_cores
    from pipelines.translate.actors import Runtime

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), int(resources.get("CPU", 1))
    num_gpus = opts.num_gpus_per_actor
    if num_gpus is None:
        num_gpus = 1.0 if gpus >= 1 else 0.0
    if num_gpus > gpus:
        raise UserError(
            f"--num_gpus_per_actor {num_gpus:g}: the cluster has {gpus:g} "
            f"{plural(gpus, 'GPU', 'GPUs')}"
        )
    tile, overlap = _tiles(opts, loaded)
    if num_gpus:
        actors = opts.num_actors or max(1, int(gpus // num_gpus))
        threads = opts.num_cpus_per_actor or 1
    else:
        spare = 0 if _io_in_actor(opts, num_gpus) else 1  # a logical CPU for I/O tasks
        actors, threads = cpu_layout(
            max(1, min(cluster_cores(), cpus - spare)),
            actors=opts.num_actors,
            threads=opts.num_cpus_per_actor,
            memory=resources.get("memory"),
            bytes_per_actor=actor_bytes(loaded.module, opts.batch_size, tile),
        )
    if actors * threads > cpus:
        raise UserError(
            f"{count(actors, 'actor')} x {count(threads, 'CPU')} need "
            f"{count(actors * threads, 'CPU')}; the cluster has {cpus} "
            "(see --num_actors, --num_cpus_per_actor)"
        )
    device = "cuda" if num_gpus else "cpu"
    runtime = Runtime(
        device=device,
        threads=threads,
        batch_size=opts.batch_size,
        tile=tile,
        overlap=overlap,
        eval_mode=_eval_mode(opts, loaded),
        channels_last=model_opts.channels_last if model_opts.channels_last is not None else True,
        autocast=model_opts.autocast,
        compile=model_opts.compile,
        compile_mode=model_opts.compile_mode,
    )
    return runtime, actors, num_gpus


# --------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------


@dataclass
class Counts:
    inputs: int = 0
    written: int = 0  # done, in this run or an earlier one
    earlier: int = 0  # done in an earlier run
    failed: int = 0
    processed: int = 0  # this run: written + failed
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        earlier = f" ({self.earlier:,} in earlier runs)" if self.earlier else ""
        return (
            f"{count(self.inputs, 'image')}: {self.written:,} written{earlier}, "
            f"{self.failed:,} failed; {rate:.1f} images/s"
        )


def _inside(child: Location, parent: Location) -> bool:
    return child.url.startswith(parent.url.rstrip("/") + "/")


def _pipeline(jobs, dst: Location, opts, common, loaded, runtime, actors, num_gpus):
    """The Ray Data dataset of per-input results (url, status, reason), not yet run."""
    import ray
    import ray.data

    from pipelines.translate.actors import ReadTranslateWrite, Translator
    from pipelines.translate.io import encode_and_write, read_and_decode

    rows = [{"url": j.url, "output": j.output} for j in jobs]
    # One block per batch: a block is what each stage hands on when it is done, so this is
    # the streaming granularity, and the most a killed run loses per in-flight task.
    blocks = math.ceil(len(rows) / opts.batch_size)
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    read_args = {
        "storage_options": dict(common.storage_options),
        "max_pixels": opts.max_pixels,
        "channels": loaded.config.input_nc,
        "side": opts.input_side,
        "tile": runtime.tile,
        "mode": opts.mode,
    }
    write_args = {
        "dst": dst.url,
        "storage_options": dict(common.storage_options),
        "fmt": opts.format,
    }
    model = {
        "config": loaded.config.to_dict(),
        # As numpy arrays: Ray stores those without pickling (fast, zero-copy reads).
        "state_dict": ray.put({k: v.cpu().numpy() for k, v in loaded.module.state_dict().items()}),
    }
    actor_args = {
        "batch_size": opts.batch_size,
        # No more actors than batches: each costs a process start and a model copy.
        "compute": ray.data.ActorPoolStrategy(size=min(actors, blocks)),
        "num_cpus": runtime.threads,
        "num_gpus": num_gpus,
    }
    if _io_in_actor(opts, num_gpus):
        return ds.map_batches(
            ReadTranslateWrite,
            fn_constructor_kwargs={
                "model": model,
                "runtime": runtime,
                "read_args": read_args,
                "write_args": write_args,
            },
            **actor_args,
        )
    ds = ds.map_batches(
        read_and_decode,
        batch_size=opts.batch_size,
        # Half a CPU: decoding is light, and a resource shape unlike the actors' keeps Ray
        # Data from fusing it into them, where it would run in series with the forward.
        num_cpus=0.5,
        fn_kwargs=read_args,
    )
    ds = ds.map_batches(
        Translator, fn_constructor_kwargs={"model": model, "runtime": runtime}, **actor_args
    )
    return ds.map_batches(encode_and_write, batch_size=opts.batch_size, fn_kwargs=write_args)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    opts, model_opts, common, ray_opts = load_options(args, *OPTION_GROUPS)
    from pipelines.translate.manifest import check_job, compact, read_state
    from pipelines.translate.paths import (
        existing_outputs,
        list_inputs,
        plan,
        remove_partial_writes,
    )

    model_opts.training_config()  # --compile_mode needs --compile, as train says
    src = Location.parse(opts.input, common.storage_options)
    dst = Location.parse(opts.output, common.storage_options)
    if dst.url == src.url:
        raise UserError("--output must not be --input: outputs go beside the inputs, not over")

    # 1. the model, checked before anything starts
    loaded = load_model(opts, model_opts, common, flags_given=set(vars(args)))
    if loaded.config.input_nc not in (1, 3) or loaded.config.output_nc not in (1, 3):
        raise UserError(
            f"{opts.model}: translate reads and writes 1- or 3-channel images; the model has "
            f"input_nc={loaded.config.input_nc}, output_nc={loaded.config.output_nc}"
        )

    # 2. the work: every input, its output name, and what an earlier run already did
    listing = list_inputs(src, exclude=dst if _inside(dst, src) else None)
    if listing.ignored:
        n = len(listing.ignored)
        print(
            f"ignoring {count(n, 'file')} that {plural(n, 'is', 'are')} hidden or "
            f"{plural(n, 'has', 'have')} no image extension (e.g. {listing.ignored[0]})"
        )
    if listing.repeated:
        n = listing.repeated
        print(
            f"{src.url}: {count(n, 'entry', 'entries')} {plural(n, 'repeats', 'repeat')} an "
            "earlier one; each file is translated once"
        )
    jobs = plan(listing.inputs, dst, suffix=opts.suffix, fmt=opts.format)
    check_job(dst, _settings(opts, loaded))
    state, _ = read_state(dst)
    remove_partial_writes(dst)
    done = {j.url for j in jobs if state.get(j.url, {}).get("status") == "done"}
    if done:
        present = existing_outputs(dst)
        gone = [j for j in jobs if j.url in done and j.output not in present]
        if gone:
            print(
                f"{count(len(gone), 'output')} recorded as written "
                f"{plural(len(gone), 'is', 'are')} no longer in {dst.url} "
                f"(e.g. {gone[0].output}); translating again"
            )
            done -= {j.url for j in gone}
    todo = [j for j in jobs if j.url not in done]

    # 3. the pipeline
    counts = Counts(inputs=len(jobs), earlier=len(jobs) - len(todo))
    if todo:
        from pipelines.common.ray_runtime import init_ray

        init_ray(ray_opts.ray_address, training=False)
        runtime, actors, num_gpus = _runtime(opts, model_opts, loaded)
        ds = _pipeline(todo, dst, opts, common, loaded, runtime, actors, num_gpus)
        progress = progress_for_logs(ds, len(todo), "translated", "image")
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            counts.processed += len(batch["url"])
            if progress:
                progress.update(counts.processed)

    # 4. the manifest, folded; the counts from it, so they are what a rerun will see
    state = compact(dst)
    statuses = [state.get(j.url, {}).get("status") for j in jobs]
    counts.written = statuses.count("done")
    counts.failed = statuses.count("failed")
    counts.seconds = time.perf_counter() - started
    missing = counts.inputs - counts.written - counts.failed
    if missing:
        raise RuntimeError(f"{missing} inputs have no record in {dst.url}/_manifest")
    failures = [(j.url, state[j.url]["reason"]) for j in jobs if state[j.url]["status"] == "failed"]
    for url, reason in failures[:5]:
        print(f"failed: {url}: {reason}")
    if len(failures) > 5:
        print(f"... and {len(failures) - 5:,} more in {dst.url}/_manifest/manifest.jsonl")
    print(counts.summary())
    return 0


def _settings(opts: TranslateOptions, loaded: Any) -> dict[str, Any]:
    """What decides the outputs: a rerun into the same DST must not change it."""
    return {
        "model": opts.model,
        "generator": loaded.config.to_dict(),
        "input_side": opts.input_side,
        "format": opts.format,
        "suffix": opts.suffix,
        "mode": opts.mode,
        "tile": list(_tiles(opts, loaded)),
        "eval": _eval_mode(opts, loaded),
    }
