"""`pix2pix translate`: run a generator over an image archive with Ray Data, resumably.

    pix2pix translate --model models:/facades@champion --input s3://archive/ --output s3://out/

The pipeline streams, so memory stays flat however large the archive:

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
import math
import time
from dataclasses import dataclass
from typing import Any

import ray
import ray.data

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
from pipelines.translate.paths import (
    Job,
    existing_outputs,
    list_inputs,
    plan,
    remove_partial_writes,
)
from pipelines.translate.resources import (
    eval_mode,
    input_load_size,
    io_in_actor,
    runtime_for,
    tiles,
)
from pix2pix_core import GeneratorConfig


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
    jobs: list[Job],
    dst: Location,
    opts: TranslateOptions,
    storage_options: dict[str, Any],
    loaded: LoadedGenerator,
    runtime: Runtime,
    actors: int,
    num_gpus: float,
) -> ray.data.Dataset:
    """The Ray Data dataset of per-input results (url, status, reason), not yet run."""
    rows = [{"url": j.url, "output": j.output} for j in jobs]
    # One block per batch: a block is what each stage hands on when it is done, so this is
    # the streaming granularity, and the most a killed run loses per in-flight task.
    blocks = math.ceil(len(rows) / opts.batch_size)
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
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
        "compute": ray.data.ActorPoolStrategy(size=min(actors, blocks)),
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
    todo = _not_done(jobs, dst)

    # 3. the pipeline
    summary = TranslateSummary(inputs=len(jobs), earlier=len(jobs) - len(todo))
    if todo:
        init_ray(ray_address, training=False)
        runtime, actors, num_gpus = runtime_for(opts, performance, loaded)
        ds = _pipeline(todo, dst, opts, storage_options, loaded, runtime, actors, num_gpus)
        progress = progress_for_logs(ds, len(todo), "translated", "image")
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            summary.processed += len(batch["url"])
            if progress:
                progress.update(summary.processed)

    # 4. the manifest, folded; the counts from it, so they are what a rerun will see
    state = compact(dst)
    statuses = [state.get(j.url, {}).get("status") for j in jobs]
    summary.written = statuses.count("done")
    summary.failed = statuses.count("failed")
    summary.seconds = time.perf_counter() - started
    missing = summary.inputs - summary.written - summary.failed
    if missing:
        raise RuntimeError(f"{missing} inputs have no record in {dst.url}/{File.MANIFEST_DIR}")
    failures = [(j.url, state[j.url]["reason"]) for j in jobs if state[j.url]["status"] == "failed"]
    for url, reason in failures[:5]:
        print(f"failed: {url}: {reason}")
    if len(failures) > 5:
        print(
            f"... and {len(failures) - 5:,} more in {dst.url}/{File.MANIFEST_DIR}/{File.MANIFEST}"
        )
    return summary


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


def _listing(src: Location, dst: Location) -> list[tuple[str, str]]:
    """The inputs under SRC (not DST's outputs, if DST is inside SRC), saying what it skips."""
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
    return listing.inputs


def _not_done(jobs: list[Job], dst: Location) -> list[Job]:
    """The jobs an earlier run did not finish: not recorded as written, or whose output is
    gone since."""
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
    return [j for j in jobs if j.url not in done]


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
