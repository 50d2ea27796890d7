"""`pix2pix translate`: run a generator over an image archive with Ray Data, resumably.

    pix2pix translate --model models:/facades@champion --input s3://archive/ --output s3://out/

The pipeline streams, so memory stays flat however large the archive; the driver holds
what it knows of each input (listings, output names, manifest state) in Arrow columns,
never a Python object per input:

    inputs (driver: list, plan output names, skip what the manifest says is done)
      -> read + decode + resize or keep for tiling     Ray tasks       (io.py)
      -> generator, tiles batched, inference_mode      actor pool      (actors.py)
      -> resize back, reattach alpha, encode, write    Ray tasks       (io.py)
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
import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from pipelines.common import tables
from pipelines.common.cluster import require_shared
from pipelines.common.dataset import COLORIZATION_CHANNELS
from pipelines.common.errors import UserError
from pipelines.common.models import LoadedGenerator, load_generator_from_uri, official_architecture
from pipelines.common.names import File
from pipelines.common.progress import progress_for_logs
from pipelines.common.ray_runtime import init_ray
from pipelines.common.storage import Location
from pipelines.common.text import count, plural
from pipelines.config.groups import (
    ArchitectureOptions,
    PerformanceOptions,
    RayOptions,
    StorageOptions,
    TrackingOptions,
)
from pipelines.config.loader import add_options, given, load_options
from pipelines.translate.actors import ReadTranslateWrite, Runtime, Translator
from pipelines.translate.io import encode_and_write, read_and_decode
from pipelines.translate.manifest import check_job, compact, read_state
from pipelines.translate.options import TranslateOptions
from pipelines.translate.paths import existing_outputs, list_inputs, plan, remove_partial_writes
from pipelines.translate.resources import (
    eval_mode,
    input_load_size,
    io_in_actor,
    runtime_for,
    tiles,
)
from pix2pix_core import GeneratorConfig

ROWS_PER_BLOCK = 1024


@dataclass
class TranslateSummary:
    """What a translation did; every input is written or failed (inputs = written + failed)."""

    inputs: int = 0
    written: int = 0  # done, in this run or an earlier one
    earlier: int = 0  # done in an earlier run
    failed: int = 0
    processed: int = 0  # this run: written + failed
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        earlier = f" ({self.earlier:,} in earlier runs)" if self.earlier else ""
        return (
            f"{count(self.inputs, 'image')}: {self.written:,} written{earlier}, "
            f"{self.failed:,} failed; {rate:.1f} images/s"
        )


def _inside(child: Location, parent: Location) -> bool:
    return child.url.startswith(parent.url.rstrip("/") + "/")


def _pipeline(
    todo: pa.Table,
    dst: Location,
    opts: TranslateOptions,
    storage_options: dict[str, Any],
    loaded: LoadedGenerator,
    runtime: Runtime,
    actors: int,
    num_gpus: float,
) -> ray.data.Dataset:
    """The Ray Data dataset of per-input results (url, status, reason), not yet run."""
    # Blocks of whole batches, up to ROWS_PER_BLOCK inputs, at least 4 an actor so that each
    # has work to the end. A block is what each stage hands on when it is done, and the most
    # a lost task redoes; at about 45 KB of driver memory a block (tables.slices), 0.04 KB
    # an input at 1,024 a block, 6 KB at one batch of 8.
    batches = math.ceil(todo.num_rows / opts.batch_size)
    most = max(1, ROWS_PER_BLOCK // opts.batch_size)
    rows = opts.batch_size * max(1, min(most, batches // (4 * actors)))
    blocks = tables.slices(todo.select(["url", "output"]), rows)
    ds = ray.data.from_arrow(blocks)
    read_args = {
        "storage_options": dict(storage_options),
        "max_pixels": opts.max_pixels,
        "channels": loaded.image_channels[0],
        "side": opts.input_side,
        "tile": runtime.tile,
        "mode": opts.mode,
        "load_size": input_load_size(opts, loaded),
        "preprocess": opts.preprocess or loaded.preprocess,
    }
    write_args = {
        "dst": dst.url,
        "storage_options": dict(storage_options),
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
        "compute": ray.data.ActorPoolStrategy(size=min(actors, len(blocks))),
        "num_cpus": runtime.threads,
        "num_gpus": num_gpus,
    }
    if io_in_actor(opts, num_gpus):
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


@contextlib.contextmanager
def _malloc_for_arrow() -> Iterator[None]:
    """Arrow allocates with the system's malloc meanwhile. Its default allocator (mimalloc)
    keeps the pages of freed buffers, so each transient column (of a listing, a manifest,
    a join) adds to the driver's peak; malloc hands large blocks back as they are freed.
    (Reading 10,000 records of manifest parts: 3.4 MB of peak against 12.3.)"""
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(before)  # buffers are freed by the pool that allocated them


@_malloc_for_arrow()
def translate(
    opts: TranslateOptions,
    *,
    performance: PerformanceOptions | None = None,
    official: GeneratorConfig | None = None,
    storage_options: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    ray_address: str | None = None,
) -> TranslateSummary:
    """Translate every image `opts.input` names into `opts.output`, or what is left of them.

    `official`: the architecture of an official `*_net_G.pth` (a bare state dict);
    `tracking_uri`: the MLflow store of a `models:/` URI.
    """
    started = time.perf_counter()
    performance = performance or PerformanceOptions()
    performance.validate()  # --compile_mode needs --compile, as train says
    storage_options = dict(storage_options or {})
    src = Location.parse(opts.input, storage_options)
    dst = Location.parse(opts.output, storage_options)
    if dst.url == src.url:
        raise UserError("--output must not be --input: outputs go beside the inputs, not over")
    require_shared({"input": src, "output": dst}, ray_address)
    src.check_access("--input")
    dst.check_access("--output", write=True)

    # 1. the model, loaded once on the driver: a bad URI stops the command before Ray
    loaded = load_generator_from_uri(
        opts.model, storage_options=storage_options, official=official, tracking_uri=tracking_uri
    )
    _check_channels(opts.model, loaded)

    # 2. the work: every input, its output name, and what an earlier run already did
    jobs = plan(_listing(src, dst), dst, suffix=opts.suffix, fmt=opts.format)
    check_job(dst, _settings(opts, loaded))
    todo, parts = _not_done(jobs, dst)

    # 3. the pipeline
    summary = TranslateSummary(inputs=jobs.num_rows, earlier=jobs.num_rows - todo.num_rows)
    fold = bool(todo.num_rows or parts or not jobs.num_rows)
    if todo.num_rows:
        init_ray(ray_address, training=False)
        runtime, actors, num_gpus = runtime_for(opts, performance, loaded)
        ds = _pipeline(todo, dst, opts, storage_options, loaded, runtime, actors, num_gpus)
        progress = progress_for_logs(ds, todo.num_rows, "translated", "image")
        # The blocks are in the object store now; the counts need only the inputs.
        jobs = jobs.select(["url"])
        del todo
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            summary.processed += len(batch["url"])
            if progress:
                progress.update(summary.processed)
        del ds

    # 4. the manifest, folded; the counts from it, so they are what a rerun will see
    if fold:
        _count(jobs, compact(dst), dst, summary)
    else:  # nothing run, nothing to fold: every input is recorded as written already
        summary.written = summary.inputs
    summary.seconds = time.perf_counter() - started
    return summary


def _count(jobs: pa.Table, state: pa.Table, dst: Location, summary: TranslateSummary) -> None:
    """The jobs' written and failed counts from the manifest state; the first failures."""
    row = pc.index_in(jobs["url"], value_set=state["input"])  # each input's record, or null
    status = state["status"].take(row)
    summary.written = pc.sum(pc.equal(status, "done")).as_py() or 0
    failed = pc.fill_null(pc.equal(status, "failed"), False)
    summary.failed = pc.sum(failed).as_py() or 0
    missing = summary.inputs - summary.written - summary.failed
    if missing:
        raise RuntimeError(f"{missing} inputs have no record in {dst.url}/{File.MANIFEST_DIR}")
    first = np.flatnonzero(failed.to_numpy(zero_copy_only=False))[:5]  # in the jobs' order
    picked = np.zeros(state.num_rows, bool)
    picked[row.take(first).to_numpy()] = True
    # A filter, not a take: a take from a table of many chunks copies it whole.
    picked = state.filter(picked)
    reasons = dict(zip(picked["input"].to_pylist(), picked["reason"].to_pylist(), strict=True))
    for url in jobs["url"].take(first).to_pylist():
        print(f"failed: {url}: {reasons[url]}")
    if summary.failed > 5:
        print(
            f"... and {summary.failed - 5:,} more in {dst.url}/{File.MANIFEST_DIR}/{File.MANIFEST}"
        )


def _check_channels(model: str, loaded: LoadedGenerator) -> None:
    """Translate reads and writes images: 1 or 3 channels, or a colorization model's L -> ab
    (RGB pictures in, RGB out)."""
    channels = (loaded.config.input_nc, loaded.config.output_nc)
    if loaded.colorization and channels != COLORIZATION_CHANNELS:
        raise UserError(
            f"{model}: a colorization model takes L and gives ab (input_nc=1, output_nc=2); "
            f"this one has input_nc={channels[0]}, output_nc={channels[1]}"
        )
    if not loaded.colorization and not set(channels) <= {1, 3}:
        raise UserError(
            f"{model}: translate reads and writes 1- or 3-channel images; the model has "
            f"input_nc={channels[0]}, output_nc={channels[1]}"
        )


def _listing(src: Location, dst: Location) -> pa.Table:
    """The inputs under SRC (not DST's outputs, if DST is inside SRC), saying what it skips."""
    listing = list_inputs(src, exclude=dst if _inside(dst, src) else None)
    if listing.ignored:
        n = listing.ignored
        print(
            f"ignoring {count(n, 'file')} that {plural(n, 'is', 'are')} hidden or "
            f"{plural(n, 'has', 'have')} no image extension (e.g. {listing.first_ignored})"
        )
    if listing.repeated:
        n = listing.repeated
        print(
            f"{src.url}: {count(n, 'entry', 'entries')} {plural(n, 'repeats', 'repeat')} an "
            "earlier one; each file is translated once"
        )
    return listing.inputs


def _not_done(jobs: pa.Table, dst: Location) -> tuple[pa.Table, list[str]]:
    """The jobs an earlier run did not finish: not recorded as written, or whose output is
    gone since; and the manifest's part files (to fold)."""
    state, parts = read_state(dst)
    row = pc.index_in(jobs["url"], value_set=state["input"])  # each input's record, or null
    done = pc.fill_null(pc.equal(state["status"].take(row), "done"), False)
    del state, row
    remove_partial_writes(dst)
    if not pc.any(done).as_py():
        return jobs, parts
    gone = pc.and_(done, pc.invert(pc.is_in(jobs["output"], value_set=existing_outputs(dst))))
    n = pc.sum(gone).as_py() or 0
    if n:
        print(
            f"{count(n, 'output')} recorded as written {plural(n, 'is', 'are')} no longer in "
            f"{dst.url} (e.g. {jobs['output'].filter(gone)[0].as_py()}); translating again"
        )
        done = pc.and_(done, pc.invert(gone))
    return jobs.filter(pc.invert(done)), parts


def _settings(opts: TranslateOptions, loaded: LoadedGenerator) -> dict[str, Any]:
    """What decides the outputs: a rerun into the same DST must not change it."""
    return {
        "model": opts.model,
        "generator": loaded.config.to_dict(),
        "input_side": opts.input_side,
        "format": opts.format,
        "suffix": opts.suffix,
        "mode": opts.mode,
        "load_size": input_load_size(opts, loaded),
        "preprocess": opts.preprocess or loaded.preprocess,
        "tile": list(tiles(opts, loaded)),
        "eval": eval_mode(opts, loaded),
        # Only when set: the settings recorded by earlier runs, without it, still match.
        **({"colorization": True} if loaded.colorization else {}),
    }


# -- command line -----------------------------------------------------------------------

OPTION_GROUPS = (
    TranslateOptions,
    ArchitectureOptions,
    PerformanceOptions,
    StorageOptions,
    TrackingOptions,
    RayOptions,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, *OPTION_GROUPS)


def run(args: argparse.Namespace) -> int:
    opts, architecture, performance, storage, tracking, ray_opts = load_options(
        args, *OPTION_GROUPS
    )
    official = official_architecture(
        opts.model, architecture.generator_config(), given(args, ArchitectureOptions)
    )
    summary = translate(
        opts,
        performance=performance,
        official=official,
        storage_options=storage.storage_options,
        tracking_uri=tracking.tracking_uri,
        ray_address=ray_opts.ray_address,
    )
    print(summary.line())
    return 0
