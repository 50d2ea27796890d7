"""What translate runs on: the tile, the test-time mode, and the model actors (how many, on
which devices, with how many threads), from the flags and the cluster's resources."""

from __future__ import annotations

import ray
from torch import nn

from pipelines.common.errors import UserError
from pipelines.common.models import LoadedGenerator
from pipelines.common.ray_runtime import cluster_cores
from pipelines.common.text import count, plural
from pipelines.config.groups import PerformanceOptions
from pipelines.translate.actors import Runtime
from pipelines.translate.options import TranslateOptions
from pix2pix_core.inference import default_overlap


def tiles(opts: TranslateOptions, loaded: LoadedGenerator) -> tuple[int, int]:
    """The tile (the size the model was trained on, as the U-Net can take it) and overlap."""
    tile = max(loaded.multiple, loaded.crop_size // loaded.multiple * loaded.multiple)
    overlap = opts.tile_overlap if opts.tile_overlap is not None else default_overlap(tile)
    if overlap >= tile:
        raise UserError(f"--tile_overlap {overlap} must be smaller than the tile ({tile})")
    return tile, overlap


def input_load_size(opts: TranslateOptions, loaded: LoadedGenerator) -> int | None:
    """--load_size, else the load_size the model was trained from, else None (the model's
    own size: the official test's resize)."""
    return opts.load_size or loaded.load_size


def io_in_actor(opts: TranslateOptions, num_gpus: float) -> bool:
    return opts.io == "actor" or (opts.io == "auto" and not num_gpus)


def eval_mode(opts: TranslateOptions, loaded: LoadedGenerator) -> bool:
    return opts.eval if opts.eval is not None else bool(loaded.eval_mode)


# What a CPU model actor holds besides the model: Python, torch, Ray and Ray Data loaded.
ACTOR_RUNTIME_BYTES = 384 * 2**20
# Activations of a unet_256 forward, per input pixel, with some headroom (about 32 MiB for
# a 256 x 256 tile).
ACTIVATION_BYTES_PER_PIXEL = 512


def actor_bytes(module: nn.Module, batch_size: int, tile: int) -> int:
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


def runtime_for(
    opts: TranslateOptions, performance: PerformanceOptions, loaded: LoadedGenerator
) -> tuple[Runtime, int, float]:
    """(how each actor runs the model, how many actors, GPUs each), from the flags and what
    the cluster has."""
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
    tile, overlap = tiles(opts, loaded)
    if num_gpus:
        actors = opts.num_actors or max(1, int(gpus // num_gpus))
        threads = opts.num_cpus_per_actor or 1
    else:
        spare = 0 if io_in_actor(opts, num_gpus) else 1  # a logical CPU for I/O tasks
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
        eval_mode=eval_mode(opts, loaded),
        channels_last=True if performance.channels_last is None else performance.channels_last,
        autocast=performance.autocast,
        compile=performance.compile,
        compile_mode=performance.compile_mode,
        colorization=loaded.colorization,
    )
    return runtime, actors, num_gpus
