"""`pix2pix prepare` end to end on the session's local Ray: every layout, every bad input."""

import json
import os
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.common import progress
from pipelines.common.dataset import PAIR_SCHEMA, QUARANTINE_SCHEMA, read_info, read_prepared
from pipelines.common.errors import UserError
from pipelines.common.images import decode, decode_stored, split_aligned
from pipelines.common.storage import Location
from pipelines.demo.sample_data import encode, write_dataset
from pipelines.prepare import PrepareOptions, PrepareSummary, prepare
from pipelines.prepare.sources import carve_val, discover, source_fingerprint
from tests.bad_inputs import bad_files, odd_files
from tests.cli_process import run_cli

LOAD = 32  # tiny: the tests check behaviour, not image quality


def _quarantine(dst: Location) -> dict[str, str]:
    table = pq.read_table(dst.join("quarantine.parquet").path, filesystem=dst.arrow_fs)
    assert table.schema.equals(QUARANTINE_SCHEMA)
    return dict(zip(table["url"].to_pylist(), table["reason"].to_pylist(), strict=True))


def _rows(dst: Location, split: str) -> list[dict]:
    """The stored rows of a split, images still encoded (read with pyarrow: quicker than a
    Ray Data read; `read_prepared` itself is checked once, in the rerun test)."""
    table = pq.read_table(dst.join(split).path, filesystem=dst.arrow_fs)
    assert table.schema.remove_metadata().equals(PAIR_SCHEMA)
    return table.to_pylist()


@pytest.fixture(scope="module")
def aligned_src(tmp_path_factory, photo_pairs) -> Location:
    """Aligned layout, no val split: 8 good pairs, a test split, every bad and odd kind."""
    root = Location.parse(str(tmp_path_factory.mktemp("aligned")))
    write_dataset({"train": photo_pairs[:8], "test": photo_pairs[8:10]}, root, "aligned")
    for name, data in {**bad_files(), **odd_files()}.items():
        root.join("train", name).write_bytes(data)
    root.join("train", "odd_width.png").write_bytes(encode(np.zeros((32, 63, 3), np.uint8)))
    root.join("train", "strip.png").write_bytes(encode(np.zeros((16, 256, 3), np.uint8)))
    root.join("train", "README.txt").write_bytes(b"facades, from the official script\n")
    root.join("train", ".DS_Store").write_bytes(b"\0")  # hidden: not an input
    return root


@pytest.fixture(scope="module")
def aligned_dst(ray_cluster, aligned_src, tmp_path_factory):
    dst = Location.parse(str(tmp_path_factory.mktemp("aligned_out")))
    return dst, prepare(aligned_src, dst, PrepareOptions(load_size=LOAD, val_fraction=0.25, seed=3))


def test_aligned_mixed_inputs_obey_the_counting_rule(aligned_src, aligned_dst):
    dst, summary = aligned_dst
    bad = {*bad_files(), "odd_width.png", "strip.png", "README.txt"}
    good = 10 + len(odd_files())
    assert (summary.inputs, summary.ready, summary.quarantined) == (good + len(bad), good, len(bad))
    assert summary.inputs == summary.ready + summary.quarantined
    assert summary.line == (
        f"{good + len(bad)} pairs: {good} ready, {len(bad)} quarantined "
        f"(see {dst.url}/quarantine.parquet)"
    )
    reasons = _quarantine(dst)
    assert set(reasons) == {aligned_src.join("train", name).url for name in bad}
    assert all(len(reason) > 10 for reason in reasons.values())
    assert "odd" in reasons[aligned_src.join("train", "odd_width.png").url]
    assert "not an image file" in reasons[aligned_src.join("train", "README.txt").url]

    info = read_info(dst)
    assert info["counts"] == {k: v for k, v in summary.counts.items() if v}
    assert sum(info["counts"].values()) == info["ready"] == good
    assert (info["inputs"], info["quarantined"]) == (summary.inputs, len(bad))
    assert (info["layout"], info["direction"], info["load_size"]) == ("aligned", "AtoB", LOAD)
    assert info["source"] == aligned_src.url


def test_aligned_rows_follow_the_schema(aligned_src, aligned_dst):
    dst, _ = aligned_dst
    rows = {row["key"]: row for split in ("train", "val") for row in _rows(dst, split)}
    assert (
        rows["train/astronaut_00000"]["a_url"]
        == aligned_src.join("train", "astronaut_00000.jpg").url
    )
    assert rows["train/gray"]["note"] == "converted from grayscale"
    assert rows["train/astronaut_00000"]["note"] == ""
    train = [r for r in rows.values() if r["split"] == "train"]
    assert {(r["width"], r["height"]) for r in train} == {(LOAD, LOAD)}
    test_rows = _rows(dst, "test")
    assert {row["key"] for row in test_rows} == {"test/chelsea_00008", "test/coffee_00009"}
    # Held out at their source size: evaluation resamples them once, from the source.
    for row in [r for r in rows.values() if r["split"] == "val"] + test_rows:
        source = decode(Location.parse(row["a_url"]).read_bytes())
        a, b = split_aligned(source)
        assert (row["width"], row["height"]) == a.size
        assert np.array_equal(decode_stored(row["a"]), a.pixels), row["key"]
        assert np.array_equal(decode_stored(row["b"]), b.pixels), row["key"]


def test_val_is_carved_deterministically_and_recorded(aligned_src, aligned_dst):
    dst, _ = aligned_dst
    info = read_info(dst)
    assert info["val_carved"] == {"from": "train", "fraction": 0.25, "seed": 3, "inputs": 6}
    # The same keys, listed in any order, give the same val set; another seed another one.
    work = discover(aligned_src).work
    _, expected = carve_val(work, 0.25, 3)
    train_inputs = {r["key"] for r in work.to_pylist() if r["split"] == "train"}

    def val_keys(table: pa.Table) -> set[str]:
        return {r["key"] for r in table.to_pylist() if r["split"] == "val"}

    shuffled, _ = carve_val(work.take(list(reversed(range(work.num_rows)))), 0.25, 3)
    carved = val_keys(shuffled)
    again, _ = carve_val(work, 0.25, 4)
    assert expected["inputs"] == len(carved) == 6 and carved <= train_inputs
    assert carved != val_keys(again)
    # What was written is that carving, less the inputs that were quarantined.
    stored = {row["key"] for row in _rows(dst, "val")}
    assert stored and stored <= carved
    assert len(stored) == info["counts"]["val"]
    train = {row["key"] for row in _rows(dst, "train")}
    assert not stored & train


def test_fingerprint_is_deterministic_and_follows_the_inputs(aligned_src, aligned_dst, tmp_path):
    dst, summary = aligned_dst
    assert read_info(dst)["fingerprint"] == summary.fingerprint
    assert source_fingerprint(aligned_src) == summary.fingerprint  # same listing, same print
    copy = Location.parse(str(tmp_path / "copy"))
    for name, data in {"x.png": encode(np.zeros((8, 16, 3), np.uint8))}.items():
        copy.join("train", name).write_bytes(data)
    before = source_fingerprint(copy)
    assert source_fingerprint(copy) == before
    copy.join("train", "x.png").write_bytes(encode(np.ones((8, 16, 3), np.uint8)))
    assert source_fingerprint(copy) != before  # changed content
    copy.join("train", "y.png").write_bytes(encode(np.zeros((8, 16, 3), np.uint8)))
    assert source_fingerprint(copy) != before  # added file


def test_rerun_replaces_the_previous_output(ray_cluster, aligned_src, tmp_path):
    dst = Location.parse(str(tmp_path / "out"))
    dst.join("keep.txt").write_bytes(b"not ours")
    src = Location.parse(str(tmp_path / "small"))
    write_dataset({"train": [_pair(0), _pair(1)], "val": [_pair(2)]}, src, "aligned")
    first = prepare(src, dst, PrepareOptions(load_size=LOAD, direction="AtoB"))
    second = prepare(src, dst, PrepareOptions(load_size=LOAD, direction="BtoA"))
    assert first.counts == second.counts == {"train": 2, "val": 1, "test": 0}
    assert read_info(dst)["val_carved"] is None  # the source has a val split
    assert len(_rows(dst, "train")) == 2
    assert dst.join("keep.txt").exists()
    # BtoA: the stored input is the photo (B), the target the rendering (A); train pairs
    # are at load_size, val at the source's size (a JPEG of it, so close, not equal).
    train = read_prepared(dst, "train").take_all()[0]
    assert train["a"].shape == (LOAD, LOAD, 3)
    row = read_prepared(dst, "val").take_all()[0]
    assert np.abs(row["a"].astype(int) - _pair(2).b).mean() < 8


def _pair(i):
    from pipelines.demo.sample_data import SamplePair

    rng = np.random.default_rng(i)
    a = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    b = np.full((16, 16, 3), 40 * i, np.uint8)
    return SamplePair(key=f"p{i}", a=a, b=b)


def test_folders_report_unpaired_sides(ray_cluster, photo_pairs, tmp_path):
    root = Location.parse(str(tmp_path / "folders"))
    write_dataset({"train": photo_pairs[:6], "val": photo_pairs[6:8]}, root, "folders", fmt="png")
    root.join("A", "train", "lonely_a.png").write_bytes(encode(photo_pairs[0].a, "png"))
    root.join("B", "val", "lonely_b.png").write_bytes(encode(photo_pairs[0].b, "png"))
    root.join("A", "train", "small.png").write_bytes(encode(photo_pairs[0].a[:32], "png"))
    root.join("B", "train", "small.png").write_bytes(encode(photo_pairs[0].b, "png"))
    root.join("A", "train", "broken.png").write_bytes(encode(photo_pairs[1].a, "png"))
    root.join("B", "train", "broken.png").write_bytes(bad_files()["truncated.jpg"])
    dst = Location.parse(str(tmp_path / "out"))
    summary = prepare(root, dst, PrepareOptions(load_size=LOAD))
    assert summary.layout == "folders"
    assert (summary.inputs, summary.ready, summary.quarantined) == (12, 8, 4)
    assert summary.counts == {"train": 6, "val": 2, "test": 0}
    reasons = _quarantine(dst)
    assert "A without B" in reasons[root.join("A", "train", "lonely_a.png").url]
    assert "B without A" in reasons[root.join("B", "val", "lonely_b.png").url]
    assert "same size" in reasons[root.join("A", "train", "small.png").url]
    assert reasons[root.join("B", "train", "broken.png").url].startswith("B: ")
    row = next(r for r in _rows(dst, "train") if r["key"] == f"train/{photo_pairs[0].key}")
    assert row["a_url"] == root.join("A", "train", f"{photo_pairs[0].key}.png").url
    assert row["b_url"] == root.join("B", "train", f"{photo_pairs[0].key}.png").url


def test_manifest_with_relative_and_missing_entries(ray_cluster, photo_pairs, tmp_path):
    root = Location.parse(str(tmp_path / "m"))
    manifest = write_dataset({"train": photo_pairs[:4]}, root, "manifest", fmt="png")
    lines = manifest.read_bytes().decode().splitlines()
    lines[1] = lines[1].replace(root.url + "/", "")  # a path relative to the manifest
    lines.append(f"{root.url}/A/train/gone.png,{root.url}/B/train/gone.png,train,gone")
    lines.append(f"{root.url}/A/train/x.png,,train,no_b")
    manifest.write_bytes(("\n".join(lines) + "\n").encode())
    dst = Location.parse(str(tmp_path / "out"))
    summary = prepare(manifest, dst, PrepareOptions(load_size=LOAD, val_fraction=0))
    assert summary.layout == "manifest"
    assert (summary.inputs, summary.ready, summary.quarantined) == (6, 4, 2)
    reasons = _quarantine(dst)
    assert "not found" in reasons[f"{root.url}/A/train/gone.png"]
    assert "no b" in reasons[f"{root.url}/A/train/x.png"]
    assert {r["key"] for r in _rows(dst, "train")} == {p.key for p in photo_pairs[:4]}
    assert read_info(dst)["fingerprint"] == source_fingerprint(manifest)


def test_all_bad_inputs_is_an_error_with_the_reasons(ray_cluster, tmp_path):
    src = Location.parse(str(tmp_path / "bad"))
    for name in ("zero_byte.jpg", "notes.jpg"):
        src.join("train", name).write_bytes(bad_files()[name])
    dst = Location.parse(str(tmp_path / "out"))
    with pytest.raises(UserError, match=r"all 2 inputs .* are unusable.*empty file"):
        prepare(src, dst)
    assert len(_quarantine(dst)) == 2
    assert not dst.join("dataset.json").exists()


def test_cli_prepares_and_prints_progress_and_the_summary(ray_cluster, tmp_path, capsys):
    src = Location.parse(str(tmp_path / "src"))
    write_dataset({"train": [_pair(0), _pair(1), _pair(3)]}, src, "aligned", fmt="png")
    dst = tmp_path / "out"
    argv = ["prepare", src.url, str(dst), "--load_size", "16", "--direction", "BtoA"]
    with mock.patch.object(progress, "PROGRESS_EVERY_S", 0.0):  # a line per finished block
        code = main(argv)
    assert code == 0
    out = capsys.readouterr().out
    assert "3 pairs: 3 ready, 0 quarantined" in out
    # stdout is no terminal here: progress lines, not Ray Data's blocks
    assert re.search(r"^prepared [12] of 3 pairs \((33|67)%\)", out, re.M), out
    assert "Running Dataset" not in out
    info = json.loads((dst / "dataset.json").read_text())
    assert (info["direction"], info["load_size"], info["counts"]) == (
        "BtoA",
        16,
        {"train": 2, "val": 1},
    )


def test_cli_nonexistent_source_exits_2_with_a_message(tmp_path, capsys):
    code = main(["prepare", str(tmp_path / "nope"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("pix2pix prepare: error: source not found:")
    assert "Traceback" not in err


def test_cli_bad_option_values_exit_2(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    code = main(["prepare", str(tmp_path / "src"), str(tmp_path / "o"), "--val_fraction", "1.5"])
    assert code == 2
    assert "val_fraction must be in [0, 1), got 1.5" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--direction", "BtoA"], "dataset_mode colorization needs direction AtoB"),
        (["--layout", "folders"], "single pictures from a folder (layout aligned)"),
    ],
)
def test_cli_colorization_refuses_what_it_cannot_prepare(tmp_path, capsys, flags, message):
    (tmp_path / "src").mkdir()
    args = ["prepare", str(tmp_path / "src"), str(tmp_path / "o"), "--dataset_mode", "colorization"]
    code = main([*args, *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


def test_colorization_prepares_single_photos_and_records_the_mode(
    ray_cluster, photo_pairs, tmp_path
):
    src = Location.parse(str(tmp_path / "photos"))
    for pair in photo_pairs[:4]:
        src.join("train", f"{pair.key}.jpg").write_bytes(encode(pair.b, "jpg"))
    dst = Location.parse(str(tmp_path / "out"))
    opts = PrepareOptions(load_size=LOAD, dataset_mode="colorization", val_fraction=0.25)
    summary = prepare(src, dst, opts)
    assert (summary.layout, summary.ready, summary.quarantined) == ("aligned", 4, 0)
    info = read_info(dst)
    assert (info["dataset_mode"], info["counts"]) == ("colorization", {"train": 3, "val": 1})
    train, val = _rows(dst, "train"), _rows(dst, "val")
    assert all(row["a"] == row["b"] for row in train + val)  # the photo, whole, both sides
    assert {(r["width"], r["height"]) for r in train} == {(LOAD, LOAD)}
    assert {(r["width"], r["height"]) for r in val} == {(64, 64)}  # held out: the source's


def _one_aligned_pair(src: Path) -> Path:
    Location.parse(str(src)).join("train", "x.png").write_bytes(
        encode(np.zeros((8, 16, 3), np.uint8))
    )
    return src


def test_dst_inside_src_is_refused(tmp_path):
    src = Location.parse(str(_one_aligned_pair(tmp_path)))
    with pytest.raises(UserError, match="inside SRC"):
        prepare(src, src.join("prepared"))


def test_dst_inside_src_is_refused_before_ray_is_reached(tmp_path):
    src = _one_aligned_pair(tmp_path / "photos")
    # An address where no Ray runs: reaching for it first would fail on that instead.
    done = run_cli("prepare", str(src), str(src / "prepared"), "--ray_address", "127.0.0.1:9")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith(
        f"DST {src / 'prepared'} is inside SRC {src}; choose another DST"
    )


def test_a_ray_address_where_nothing_listens_is_refused_at_once(tmp_path):
    args = ["prepare", str(_one_aligned_pair(tmp_path / "photos")), str(tmp_path / "out")]
    done = run_cli(*args, "--ray_address", "127.0.0.1:9")
    assert done.returncode == 2, done.stderr
    assert "error: --ray_address 127.0.0.1:9: no Ray cluster answers there" in done.stderr
    done = run_cli(*args, env={**os.environ, "RAY_ADDRESS": "127.0.0.1:9"})
    assert done.returncode == 2, done.stderr
    assert "error: RAY_ADDRESS 127.0.0.1:9: no Ray cluster answers there" in done.stderr
    assert "or unset RAY_ADDRESS to start a local Ray" in done.stderr


def test_the_summary_line_agrees_in_number():
    one = PrepareSummary(dst="d", layout="aligned", inputs=1, ready=1, quarantined=0)
    assert one.line == "1 pair: 1 ready, 0 quarantined (see d/quarantine.parquet)"


def test_layout_detection(tmp_path):
    folders = Location.parse(str(tmp_path / "f"))
    for side in ("A", "B"):
        folders.join(side, "1.png").write_bytes(encode(np.zeros((8, 8, 3), np.uint8)))
    assert discover(folders).layout == "folders"
    folders.join("train", "2.png").write_bytes(encode(np.zeros((8, 16, 3), np.uint8)))
    with pytest.raises(UserError, match="--layout"):
        discover(folders)
    assert discover(folders, "aligned").layout == "aligned"
    with pytest.raises(UserError, match="unknown layout 'nope'"):
        discover(folders, "nope")


def test_manifest_rows_of_the_wrong_width_are_recorded_not_dropped(tmp_path):
    root = Location.parse(str(tmp_path))
    for name in ("A/1.png", "B/1.png", "A/2.png", "B/2.png"):
        root.join(name).write_bytes(encode(np.zeros((8, 8, 3), np.uint8)))
    manifest = root.join("pairs.csv")
    manifest.write_bytes(
        b"a,b,split\nA/1.png,B/1.png,train\nA/2.png\nA/2.png,B/2.png,val,extra\n"
        b"A/2.png,B/2.png,test\nA/1.png,B/1.png,val\n"
    )
    sources = discover(manifest)
    assert [(r["key"], r["split"]) for r in sources.work.to_pylist()] == [
        ("1", "train"),
        ("2", "test"),
    ]
    assert {r["url"]: r["reason"] for r in sources.quarantine.to_pylist()} == {
        f"{manifest.url} (row 3)": "cannot read row 3: 1 fields where the header has 3",
        f"{manifest.url} (row 4)": "cannot read row 4: 4 fields where the header has 3",
        root.join("A/1.png").url: "duplicate key '1' (also row 2)",
    }
    assert sources.inputs == 5


@pytest.mark.parametrize(
    ("preprocess", "train_size"),
    [("resize_and_crop", (32, 32)), ("scale_width", (32, 21)), ("crop", (48, 32)),
     ("none", (48, 32))],
)  # fmt: skip
def test_preprocess_decides_the_size_train_images_are_stored_at(
    ray_cluster, tmp_path, preprocess, train_size
):
    from pipelines.demo.sample_data import SamplePair

    rng = np.random.default_rng(0)
    pairs = [
        SamplePair(f"p{i}", *(rng.integers(0, 255, (32, 48, 3), np.uint8) for _ in "ab"))
        for i in range(3)
    ]
    src = write_dataset({"train": pairs[:2], "val": pairs[2:]}, Location.parse(str(tmp_path / "s")))
    dst = Location.parse(str(tmp_path / "out"))
    prepare(src, dst, PrepareOptions(load_size=LOAD, preprocess=preprocess))
    assert {(r["width"], r["height"]) for r in _rows(dst, "train")} == {train_size}
    assert {(r["width"], r["height"]) for r in _rows(dst, "val")} == {(48, 32)}  # the source's
    assert read_info(dst)["preprocess"] == preprocess
