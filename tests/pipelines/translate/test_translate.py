"""`pix2pix translate` end to end on the session's Ray: local files, S3, reruns, a killed run."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.cli import main
from pipelines.common import progress
from pipelines.common.storage import Location
from pipelines.demo.sample_data import encode
from pix2pix_core import GeneratorConfig, build_generator, save_generator
from tests.bad_inputs import bad_files, odd_files
from tests.tiny import GENERATOR, TINY_ARCHITECTURE, to_flags

REPO = Path(__file__).resolve().parents[3]
TILE = 32  # the tiny generator's size: larger images are tiled, smaller ones resized
SUMMARY = re.compile(
    r"^([\d,]+) images?: ([\d,]+) written(?: \(([\d,]+) in earlier runs\))?, ([\d,]+) failed; "
    r"[\d.]+ images/s$",
    re.MULTILINE,
)
GOOD_SIZES = {  # name -> (width, height): one tile, tiled, tiled, resized up and back
    "a.png": (32, 32),
    "sub/b.jpg": (70, 40),
    "sub/deeper/c.png": (64, 96),
    "d.png": (20, 20),
}


def _tiny_config() -> GeneratorConfig:
    return GENERATOR


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """The same weights twice: this project's checkpoint, and an official `*_net_G.pth`."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    config = _tiny_config()
    net = build_generator(config)
    ours = folder / "generator.pt"
    ours.write_bytes(save_generator(net, config, {"eval_mode": True, "crop_size": TILE}))
    official = folder / "latest_net_G.pth"
    torch.save(net.state_dict(), official)
    return ours, official


def _image(width: int, height: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write_inputs(root: Location) -> None:
    for i, (name, (w, h)) in enumerate(GOOD_SIZES.items()):
        root.join(name).write_bytes(encode(_image(w, h, i), name.rsplit(".", 1)[1]))
    for name, data in odd_files().items():
        root.join("odd", name).write_bytes(data)
    for name, data in bad_files().items():
        root.join("bad", name).write_bytes(data)
    root.join("README.txt").write_bytes(b"not an input\n")


@contextlib.contextmanager
def _captured():
    """stdout and stderr of an in-process command, for module-scoped fixtures (no capsys)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield buf


def _translate(capsys, *argv: str) -> tuple[int, str]:
    rc = main(["translate", *argv])
    out, err = capsys.readouterr()
    return rc, out + err


def _summary(output: str) -> tuple[int, int, int, int]:
    """(inputs, written, of those in earlier runs, failed) from the summary line."""
    match = SUMMARY.search(output)
    assert match, f"no summary line in:\n{output[-2000:]}"
    n = [int((g or "0").replace(",", "")) for g in match.groups()]
    return n[0], n[1], n[2], n[3]


def _manifest(dst: Location) -> dict[str, dict]:
    text = dst.join("_manifest", "manifest.jsonl").read_bytes().decode()
    records = [json.loads(line) for line in text.splitlines()]
    return {r["input"]: r for r in records}


def _size(loc: Location) -> tuple[int, int]:
    with Image.open(io.BytesIO(loc.read_bytes())) as img:
        return img.size


def _check_outputs(src: Location, dst: Location, output: str) -> dict[str, dict]:
    """The counting rule, every output at its input's size, every failure with a reason."""
    inputs, written, _, failed = _summary(output)
    good = len(GOOD_SIZES) + len(odd_files())
    assert (inputs, written, failed) == (good + len(bad_files()), good, len(bad_files()))
    assert inputs == written + failed
    state = _manifest(dst)
    assert len(state) == inputs
    for name, (w, h) in GOOD_SIZES.items():
        rec = state[src.join(name).url]
        assert rec["status"] == "done"
        assert rec["output"] == dst.join(name.rsplit(".", 1)[0] + ".png").url
        assert _size(Location(rec["output"], dst.options)) == (w, h)
    for name in odd_files():
        rec = state[src.join("odd", name).url]
        assert rec["status"] == "done", rec
        assert _size(Location(rec["output"], dst.options)) == (64, 32)
    for name in bad_files():
        rec = state[src.join("bad", name).url]
        assert rec["status"] == "failed" and rec["output"] is None
        assert rec["reason"]
    assert "over the limit" in state[src.join("bad", "bomb.png").url]["reason"]
    return state


@pytest.fixture(scope="module")
def translated(ray_cluster, tiny_model, tmp_path_factory) -> tuple[Location, Location, str]:
    """A folder of mixed sizes, odd modes and bad files, translated once: (src, dst, output)."""
    root = tmp_path_factory.mktemp("mixed")
    src, dst = Location.parse(str(root / "src")), Location.parse(str(root / "out"))
    _write_inputs(src)
    argv = ["--model", str(tiny_model[0]), "--input", src.url, "--output", dst.url]
    # A progress line after every batch (the output is a log here, not a terminal).
    with _captured() as output, mock.patch.object(progress, "PROGRESS_EVERY_S", 0.0):
        rc = main(["translate", *argv])
    assert rc == 0, output.getvalue()
    return src, dst, output.getvalue()


def test_a_folder_of_mixed_sizes_and_bad_files(translated):
    src, dst, output = translated
    state = _check_outputs(src, dst, output)
    assert "ignoring 1 file that is hidden or has no image extension (e.g. " in output
    # Alpha was kept aside and put back on the output.
    rgba = state[src.join("odd", "rgba.png").url]
    with Image.open(rgba["output"]) as out, Image.open(src.join("odd", "rgba.png").path) as inp:
        assert out.mode == "RGBA"
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(inp.getchannel("A")))
    assert "alpha" in rgba["note"]


def test_a_log_gets_progress_lines_with_the_rate_and_the_time_left(translated):
    *_, output = translated
    inputs, *_ = _summary(output)
    lines = re.findall(rf"^translated (\d+) of {inputs} images \((\d+)%\)(.*)$", output, re.M)
    assert lines, output[-2000:]
    done = [int(n) for n, _, _ in lines]
    assert done == sorted(done) and done[0] > 0 and done[-1] < inputs
    assert [int(pct) for _, pct, _ in lines] == [round(100 * n / inputs) for n in done]
    assert "Running Dataset" not in output  # Ray Data's own progress blocks


def test_a_rerun_skips_what_is_done_and_retries_what_failed(translated, capsys, tiny_model):
    src, dst, _ = translated
    state = _manifest(dst)
    done = {r["output"]: os.stat(r["output"]).st_mtime_ns for r in state.values() if r["output"]}
    src.join("bad", "zero_byte.jpg").write_bytes(encode(_image(24, 40, 9), "jpg"))  # fixed
    deleted = sorted(done)[0]  # a user removed an output: the rerun makes it again
    deleted_bytes = Path(deleted).read_bytes()
    os.remove(deleted)
    argv = ["--model", str(tiny_model[0]), "--input", src.url, "--output", dst.url]
    rc, output = _translate(capsys, *argv)
    assert rc == 0, output
    assert f"1 output recorded as written is no longer in {dst.url} (e.g. {deleted})" in output
    _, written, earlier, failed = _summary(output)
    assert (written, earlier, failed) == (len(done) + 1, len(done) - 1, len(bad_files()) - 1)
    assert _size(dst.join("bad", "zero_byte.png")) == (24, 40)
    assert Path(deleted).read_bytes() == deleted_bytes
    # Nothing else that was done was translated or written again.
    del done[deleted]
    assert {o: os.stat(o).st_mtime_ns for o in done} == done
    rerun = _manifest(dst)
    kept = [k for k, v in state.items() if v["status"] == "done" and v["output"] != deleted]
    assert all(rerun[k]["time"] == state[k]["time"] for k in kept)


def test_official_weights_translate_exactly_like_the_same_weights_of_this_project(
    translated, capsys, tiny_model, tmp_path
):
    src, ours, _ = translated
    official = tmp_path / "official"
    rc, output = _translate(
        capsys,
        "--model", str(tiny_model[1]), *to_flags(TINY_ARCHITECTURE),
        "--eval", "--input", src.url, "--output", str(official),
    )  # fmt: skip
    assert rc == 0, output
    names = [n.rsplit(".", 1)[0] + ".png" for n in GOOD_SIZES] + [
        f"odd/{n.rsplit('.', 1)[0]}.png" for n in odd_files()
    ]
    for name in names:
        assert (official / name).read_bytes() == Path(ours.join(name).path).read_bytes(), name


@pytest.mark.s3
def test_a_folder_on_the_object_store(ray_cluster, capsys, tiny_model, s3_store):
    src, dst = s3_store.location(), s3_store.location()
    _write_inputs(src)
    # I/O in tasks beside the actor, as with GPUs (the local tests run it in the actor).
    argv = ["--model", str(tiny_model[0]), "--input", src.url, "--output", dst.url, "--io", "tasks"]
    rc, output = _translate(capsys, *argv, "--storage_options", json.dumps(s3_store.options))
    assert rc == 0, output
    _check_outputs(src, dst, output)
    parts = dst.join("_manifest", "parts").path
    dst.fs.invalidate_cache()
    assert not [p for p in dst.fs.find(parts) if p.endswith(".jsonl")]  # all folded

    # A rerun after one output was deleted translates that one only.
    deleted = dst.join(next(iter(GOOD_SIZES)).rsplit(".", 1)[0] + ".png")
    deleted.fs.rm(deleted.path)
    rc, output = _translate(capsys, *argv, "--storage_options", json.dumps(s3_store.options))
    assert rc == 0, output
    assert f"1 output recorded as written is no longer in {dst.url}" in output
    assert deleted.exists()


def test_a_killed_run_and_its_rerun_leave_every_output_exactly_once(
    ray_cluster, capsys, tiny_model, tmp_path
):
    n = 8
    src = Location.parse(str(tmp_path / "src"))
    for i in range(n):
        src.join(f"{i // 4}", f"{i}.png").write_bytes(encode(_image(96, 96, i)))
    dst = tmp_path / "out"
    # Heavily overlapping tiles (289 per image) make the run long enough to kill mid-way.
    argv = [
        "--model", str(tiny_model[0]), "--input", src.url, "--output", str(dst),
        "--tile", "--tile_overlap", "28", "--batch_size", "2",
    ]  # fmt: skip
    address = ray_cluster.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "translate", *argv, "--ray_address", address],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=(log := open(tmp_path / "killed_run.log", "wb")),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    parts = dst / "_manifest" / "parts"
    deadline = time.monotonic() + 300
    while not (parts.exists() and any(parts.iterdir())) and time.monotonic() < deadline:
        if proc.poll() is not None:
            log.close()
            tail = (tmp_path / "killed_run.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"the run ended before it could be killed:\n{tail}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert parts.exists(), "no batch was done within 300 s"
    recorded = sum(len(p.read_text().splitlines()) for p in parts.iterdir())
    assert 0 < recorded < n, "the kill did not land mid-way"

    rc, output = _translate(capsys, *argv)
    assert rc == 0, output
    inputs, written, earlier, failed = _summary(output)
    assert (inputs, written, failed) == (n, n, 0)
    assert earlier >= recorded
    files = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    outputs = [f for f in files if not f.startswith("_manifest/")]
    assert outputs == sorted(f"{i // 4}/{i}.png" for i in range(n))
    for name in outputs:
        with Image.open(dst / name) as img:
            assert img.size == (96, 96)
    assert all(r["status"] == "done" for r in _manifest(Location.parse(str(dst))).values())

    # Once all is done, a rerun does no new work at all.
    mtimes = {name: (dst / name).stat().st_mtime_ns for name in outputs}
    rc, output = _translate(capsys, *argv)
    assert rc == 0, output
    assert _summary(output) == (n, n, n, 0)
    assert {name: (dst / name).stat().st_mtime_ns for name in outputs} == mtimes


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--resize", "--tile"], "exclude each other"),
        (["--batch_size", "0"], "--batch_size must be >= 1"),
        (["--compile_mode", "reduce-overhead"], "set compile too (--compile)"),
        (["--input_side", "C"], None),  # argparse: invalid choice
    ],
)
def test_bad_flags_are_user_errors(capsys, tiny_model, tmp_path, extra, message):
    argv = ["--model", str(tiny_model[0]), "--input", str(tmp_path), "--output", str(tmp_path)]
    if message is None:
        with pytest.raises(SystemExit) as exit_:
            main(["translate", *argv, *extra])
        assert exit_.value.code == 2
        return
    rc, output = _translate(capsys, *argv, *extra)
    assert rc == 2
    assert output.startswith("pix2pix translate: error: ")
    assert message in output


def test_output_over_input_is_refused_before_any_work(capsys, tiny_model, tmp_path):
    data = tmp_path / "data"
    Location.parse(str(data)).join("x.png").write_bytes(encode(_image(8, 8, 0)))
    Location.parse(str(data)).join("data", "x.png").write_bytes(encode(_image(8, 8, 1)))
    rc, output = _translate(
        capsys, "--model", str(tiny_model[0]), "--input", str(data), "--output", str(tmp_path)
    )
    assert rc == 2
    assert "would overwrite the input" in output
    rc, output = _translate(
        capsys, "--model", str(tiny_model[0]), "--input", str(data), "--output", str(data)
    )
    assert rc == 2
    assert "--output must not be --input" in output


def test_an_output_that_cannot_be_written_is_one_line_naming_it_before_ray(
    capsys, tiny_model, tmp_path, s3_store
):
    data = tmp_path / "data"
    Location.parse(str(data)).join("x.png").write_bytes(encode(_image(8, 8, 0)))
    nowhere = f"s3://{s3_store.bucket}/out"
    wrong_keys = json.dumps({"key": "not-a-key", "secret": "not-a-secret"})
    with mock.patch("pipelines.translate.job.init_ray") as ray_start:
        rc, output = _translate(
            capsys, "--model", str(tiny_model[0]), "--input", str(data),
            "--output", nowhere, "--storage_options", wrong_keys,
        )  # fmt: skip
    assert rc == 2 and not ray_start.called, output
    (line,) = [line for line in output.splitlines() if "error:" in line]
    assert line.startswith(f"pix2pix translate: error: --output {nowhere}: cannot write there")
    assert "Traceback" not in output


def _loaded_tiny_model():
    """What _runtime reads of a loaded model: its tile, eval mode, weights and task."""
    from types import SimpleNamespace

    return SimpleNamespace(
        multiple=32,
        crop_size=TILE,
        eval_mode=True,
        module=build_generator(_tiny_config()),
        colorization=False,
    )


@pytest.mark.parametrize(
    ("flags", "layout"),
    [
        ({}, "one single-threaded actor per core"),
        ({"num_actors": 1}, "one actor with every core"),
        ({"num_cpus_per_actor": 2}, "actors of two threads"),
        ({"io": "tasks"}, "a logical CPU left to the tasks"),
    ],
)
def test_cpu_actors_and_threads_fit_the_cores(ray_cluster, flags, layout):
    from pipelines.config.groups import PerformanceOptions
    from pipelines.translate.options import TranslateOptions
    from pipelines.translate.resources import runtime_for

    cpus = int(ray_cluster.cluster_resources()["CPU"])  # logical: 4, above the cores
    cores = min(os.cpu_count() or 1, cpus)
    opts = TranslateOptions(model="m", input="i", output="o", **flags)
    runtime, actors, num_gpus = runtime_for(opts, PerformanceOptions(), _loaded_tiny_model())
    expected = {
        "one single-threaded actor per core": (cores, 1),
        "one actor with every core": (1, cores),
        "actors of two threads": (max(1, cores // 2), 2),
        "a logical CPU left to the tasks": (min(cores, cpus - 1), 1),
    }[layout]
    assert (actors, runtime.threads, num_gpus) == (*expected, 0)


def test_more_actors_than_the_cluster_has_cpus_is_a_user_error(ray_cluster):
    from pipelines.common.errors import UserError
    from pipelines.config.groups import PerformanceOptions
    from pipelines.translate.options import TranslateOptions
    from pipelines.translate.resources import runtime_for

    cpus = int(ray_cluster.cluster_resources()["CPU"])
    opts = TranslateOptions(model="m", input="i", output="o", num_actors=cpus + 1)
    with pytest.raises(UserError, match=f"the cluster has {cpus}"):
        runtime_for(opts, PerformanceOptions(), _loaded_tiny_model())
