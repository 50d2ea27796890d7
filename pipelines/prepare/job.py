"""`pix2pix prepare SRC DST`: pair, validate and resize an image dataset into Parquet.

    1. list SRC once, detect the layout, pair A with B, carve val   (driver, no image read)
    2. decode, check, convert, resize, encode; write Parquet shards  (Ray Data tasks)
    3. quarantine.parquet, dataset.json, and a one-line summary      (driver)

Every input ends as a pair row or a quarantine row with a reason: inputs = ready +
quarantined, always. The format written is described in `pipelines.common.dataset`.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.data

from pipelines.common import tables
from pipelines.common.cluster import require_shared
from pipelines.common.dataset import (
    INFO_FILE,
    QUARANTINE_FILE,
    QUARANTINE_SCHEMA,
    SCHEMA_VERSION,
    SPLITS,
)
from pipelines.common.errors import UserError
from pipelines.common.progress import progress_for_logs
from pipelines.common.ray_runtime import init_ray
from pipelines.common.storage import Location
from pipelines.common.text import count
from pipelines.config.groups import RayOptions, StorageOptions
from pipelines.config.loader import add_options, load_options
from pipelines.prepare.options import PrepareOptions
from pipelines.prepare.pairs import (
    IMAGE_FORMAT,
    PARQUET_COMPRESSION,
    held_out_max_side,
    process_batch,
)
from pipelines.prepare.sources import Sources, carve_val, discover

# Pairs per Ray task, and so per Parquet shard (about 270 KB a pair at load_size 286).
MAX_PAIRS_PER_TASK = 128


@dataclass(frozen=True)
class PrepareSummary:
    """What a prepare run did. `inputs == ready + quarantined`."""

    dst: str
    layout: str
    inputs: int
    ready: int
    quarantined: int
    counts: dict[str, int] = field(default_factory=dict)  # split -> ready pairs
    fingerprint: str = ""

    @property
    def line(self) -> str:
        quarantine = f"{self.dst.rstrip('/')}/{QUARANTINE_FILE}"
        return (
            f"{count(self.inputs, 'pair')}: {self.ready:,} ready, {self.quarantined:,} quarantined "
            f"(see {quarantine})"
        )


def prepare(
    src: Location | str,
    dst: Location | str,
    options: PrepareOptions | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    ray_address: str | None = None,
) -> PrepareSummary:
    """Prepare `src` into `dst` on the current Ray, or on `ray_address`'s, or on a local one,
    started once the inputs are listed and checked (so that a mistake fails at once).

    Raises UserError when SRC does not exist, holds nothing, overlaps DST, or when every
    input is unusable (quarantine.parquet is still written, to say why).
    """
    opts = options or PrepareOptions()
    src = src if isinstance(src, Location) else Location.parse(src, storage_options)
    dst = dst if isinstance(dst, Location) else Location.parse(dst, storage_options)
    src.check_access("SRC")
    started = time.monotonic()
    # 1. list, pair, carve
    # Colorization's inputs are single pictures: an aligned listing, one row per file.
    sources = discover(src, "aligned" if opts.dataset_mode == "colorization" else opts.layout)
    _check_no_overlap(src, dst, sources)
    require_shared({"SRC": src, "DST": dst}, ray_address)  # joins a cluster: after the checks
    sources.work, carved = carve_val(sources.work, opts.val_fraction, opts.seed)
    dst.check_access("DST", write=True)
    _clear_previous(dst)

    # 2. decode, validate, resize, encode, write shards
    outcome = _run_tasks(sources, src, dst, opts, ray_address)

    # 3. quarantine, counts, dataset.json
    quarantine = pa.concat_tables([sources.quarantine, outcome.failed])
    _write_quarantine(dst, quarantine)
    summary = PrepareSummary(
        dst=dst.url,
        layout=sources.layout,
        inputs=sources.inputs,
        ready=sum(outcome.counts.values()),
        quarantined=quarantine.num_rows,
        counts=outcome.counts,
        fingerprint=sources.fingerprint,
    )
    if summary.ready + summary.quarantined != summary.inputs:  # the counting rule
        raise RuntimeError(f"lost inputs: {summary}")
    if summary.ready == 0:
        examples = quarantine.slice(0, 3).to_pylist()
        reasons = "; ".join(f"{row['url']}: {row['reason']}" for row in examples)
        raise UserError(
            f"all {count(summary.inputs, 'input')} in {src.url} are unusable "
            f"(see {dst.join(QUARANTINE_FILE).url}), e.g. {reasons}"
        )
    dst.join(INFO_FILE).write_json(
        _info(summary, src, opts, carved, outcome.notes, time.monotonic() - started)
    )
    return summary


def _check_no_overlap(src: Location, dst: Location, sources: Sources) -> None:
    """DST must not be inside SRC (a rerun would read its own output) nor hold inputs
    (clearing DST would delete them)."""
    inside = dst.url == src.url or dst.url.startswith(src.url.rstrip("/") + "/")
    if inside and sources.layout != "manifest":
        raise UserError(f"DST {dst.url} is inside SRC {src.url}; choose another DST")
    prefix = dst.url.rstrip("/") + "/"
    for side in ("a_url", "b_url"):
        inside = sources.work.filter(pc.starts_with(sources.work[side], prefix))
        if inside.num_rows:
            url = inside[side][0].as_py()
            raise UserError(f"DST {dst.url} holds inputs ({url}); choose another DST")


def _clear_previous(dst: Location) -> None:
    """Remove what an earlier prepare wrote to DST (and nothing else)."""
    dst.makedirs()
    for name in (INFO_FILE, QUARANTINE_FILE, *SPLITS):
        loc = dst.join(name)
        if loc.fs.exists(loc.path):
            loc.fs.rm(loc.path, recursive=True)


@dataclass
class _Outcome:
    """What the tasks made of the work: counted as it streams back, only failures kept."""

    counts: dict[str, int] = field(default_factory=lambda: {split: 0 for split in SPLITS})
    notes: int = 0  # ready pairs converted on the way (e.g. from grayscale)
    failures: list[pa.Table] = field(default_factory=list)

    @property
    def failed(self) -> pa.Table:
        return pa.concat_tables([QUARANTINE_SCHEMA.empty_table(), *self.failures])

    def add(self, results: pa.Table) -> None:
        good = results.filter(pc.is_null(results["reason"]))
        for split in SPLITS:
            self.counts[split] += pc.sum(pc.equal(good["split"], split)).as_py() or 0
        self.notes += pc.sum(pc.not_equal(good["note"], "")).as_py() or 0
        bad = results.filter(pc.is_valid(results["reason"])).select(QUARANTINE_SCHEMA.names)
        if bad.num_rows:
            self.failures.append(bad.cast(QUARANTINE_SCHEMA))


def _run_tasks(
    sources: Sources, src: Location, dst: Location, opts: PrepareOptions, ray_address: str | None
) -> _Outcome:
    """Process the work table on Ray Data: one task per block, one shard per block."""
    outcome = _Outcome()
    work = sources.work
    if not work.num_rows:
        return outcome
    init_ray(ray_address, training=False)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    # Two blocks per CPU keeps every core busy to the end; the cap bounds shard size.
    per_task = max(1, min(MAX_PAIRS_PER_TASK, math.ceil(work.num_rows / (2 * cpus))))
    ds = ray.data.from_arrow(tables.slices(work, per_task)).map_batches(
        process_batch,
        batch_size=None,  # a whole block per call: its pairs become one shard per split
        batch_format="pyarrow",
        fn_kwargs={
            "dst_url": dst.url,
            "dst_options": dict(dst.options),
            "src_options": dict(src.options),
            "load_size": opts.load_size,
            "preprocess": opts.preprocess,
            "direction": opts.direction,
            "max_pixels": opts.max_pixels,
            "dataset_mode": opts.dataset_mode,
        },
    )
    progress = progress_for_logs(ds, work.num_rows, "prepared", "pair")
    done = 0
    for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        outcome.add(table)
        done += table.num_rows
        if progress:
            progress.update(done)
    return outcome


def _write_quarantine(dst: Location, table: pa.Table) -> None:
    pq.write_table(table, dst.join(QUARANTINE_FILE).path, filesystem=dst.arrow_fs)


def _info(
    summary: PrepareSummary,
    src: Location,
    opts: PrepareOptions,
    carved: dict[str, Any] | None,
    notes: int,
    seconds: float,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "source": src.url,
        "layout": summary.layout,
        "fingerprint": summary.fingerprint,
        "dataset_mode": opts.dataset_mode,
        "direction": opts.direction,
        "load_size": opts.load_size,
        "preprocess": opts.preprocess,
        "width": opts.load_size,  # of the train images, under resize_and_crop
        "height": opts.load_size,
        "held_out_max_side": held_out_max_side(opts.load_size),
        "encoding": f"{IMAGE_FORMAT.lower()} in parquet ({PARQUET_COMPRESSION})",
        "counts": {split: n for split, n in summary.counts.items() if n},
        "inputs": summary.inputs,
        "ready": summary.ready,
        "quarantined": summary.quarantined,
        "converted": notes,
        "val_carved": carved,
        "max_pixels": opts.max_pixels,
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(seconds, 2),
    }


# -- command line -----------------------------------------------------------------------


OPTION_GROUPS = (PrepareOptions, StorageOptions, RayOptions)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="source: a folder URL, or a manifest file (.csv/.parquet)")
    parser.add_argument("dst", help="where to write the prepared dataset (a folder URL)")
    add_options(parser, *OPTION_GROUPS)


def run(args: argparse.Namespace) -> int:
    opts, storage, ray_opts = load_options(args, *OPTION_GROUPS)
    src = Location.parse(args.src, storage.storage_options)
    dst = Location.parse(args.dst, storage.storage_options)
    if not src.exists():  # before starting Ray: a typo should fail in a blink
        raise UserError(f"source not found: {src.url}")
    print(prepare(src, dst, opts, ray_address=ray_opts.ray_address).line)
    return 0
