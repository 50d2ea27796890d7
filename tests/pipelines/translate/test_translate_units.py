"""The parts of `pix2pix translate` that need no Ray: names, images, manifest, semantics."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from pipelines.common.errors import UserError
from pipelines.common.images import BadImage
from pipelines.common.progress import ProgressLine
from pipelines.common.storage import Location
from pipelines.demo.sample_data import encode
from pipelines.translate.actors import Runtime, Translator, prepare_generator
from pipelines.translate.io import model_input, read_and_decode
from pipelines.translate.job import TranslateSummary, _not_done
from pipelines.translate.manifest import check_job, compact, read_state, record, write_part
from pipelines.translate.paths import inputs_table, list_inputs, plan, safe_relative
from pix2pix_core import GeneratorConfig, build_generator
from pix2pix_core.precision import native_bf16

# -- where outputs go -----------------------------------------------------------------------

ESCAPES = [
    "../../etc/passwd.png",
    "a/../../../b.png",
    "/abs/path.png",
    "..\\..\\windows.png",
    "..",
    "sub/./../x.png",
    "_manifest/job.png",
    "new\nline\x00.png",
]


def _outputs(inputs: list[tuple[str, str]], dst: Location, suffix: str = "") -> list[str]:
    return plan(inputs_table(inputs), dst, suffix=suffix, fmt="png")["output"].to_pylist()


@pytest.mark.parametrize("rel", ESCAPES)
def test_whatever_the_name_the_output_stays_inside_dst(tmp_path, rel):
    dst = Location.parse(str(tmp_path / "out"))
    (output,) = _outputs([(f"s3://bucket/in/{rel}", rel)], dst, suffix="_fake")
    assert output.startswith(dst.url + "/")
    inside = output[len(dst.url) + 1 :]
    assert ".." not in inside.split("/")
    assert not inside.startswith("_manifest/")
    assert not any(ord(ch) < 32 for ch in inside)
    assert output.endswith("_fake.png")


def test_safe_relative_keeps_ordinary_paths():
    assert safe_relative("a/b/c.jpg") == "a/b/c.jpg"
    assert safe_relative("..weird/x..y.png") == "..weird/x..y.png"


def test_names_that_would_collide_are_kept_apart(tmp_path):
    dst = Location.parse(str(tmp_path / "out"))
    inputs = [("/in/a.jpg", "a.jpg"), ("/in/a.png", "a.png"), ("/in/b.jpg", "b.jpg")]
    outputs = _outputs(inputs, dst)
    assert len(set(outputs)) == 3
    assert outputs[2] == f"{dst.url}/b.png"
    # Names that differ only in what cleaning replaces, extension and all: a hash each.
    outputs = _outputs([("/in/x\n.png", "x\n.png"), ("/in/x\t.png", "x\t.png")], dst)
    assert len(set(outputs)) == 2
    assert all(re.fullmatch(rf"{dst.url}/x__png-[0-9a-f]{{8}}\.png", o) for o in outputs)


def test_an_output_that_would_overwrite_an_input_is_refused(tmp_path):
    src = tmp_path / "data"
    inputs = [(f"{src}/x.png", "x.png"), (f"{src}/data/x.png", "data/x.png")]
    with pytest.raises(UserError, match="would overwrite the input"):
        _outputs(inputs, Location.parse(str(tmp_path)))


def test_suffix_cannot_hold_a_path(tmp_path):
    with pytest.raises(UserError, match="--suffix"):
        _outputs([("/in/a.png", "a.png")], Location.parse(str(tmp_path)), suffix="/../x")


def test_listing_skips_dst_inside_src_and_reports_what_it_ignores(tmp_path):
    src = Location.parse(str(tmp_path))
    png = encode(np.zeros((8, 8, 3), np.uint8))
    for name in ("a.png", "sub/b.JPG", "out/old_output.png", "notes.txt", ".hidden.png"):
        src.join(name).write_bytes(png)
    listing = list_inputs(src, exclude=src.join("out"))
    assert listing.inputs.to_pylist() == [
        {"url": f"{src.url}/a.png", "rel": "a.png"},
        {"url": f"{src.url}/sub/b.JPG", "rel": "sub/b.JPG"},
    ]
    assert listing.ignored == 2  # .hidden.png and notes.txt
    assert listing.first_ignored == f"{src.url}/.hidden.png"  # the first, sorted


def test_a_list_of_urls_mirrors_paths_below_their_common_folder(tmp_path):
    root = Location.parse(str(tmp_path))
    png = encode(np.zeros((8, 8, 3), np.uint8))
    for name in ("imgs/x/a.png", "imgs/y/b.png"):
        root.join(name).write_bytes(png)
    root.join("list.txt").write_bytes(
        b"# inputs\nimgs/x/a.png\n" + f"{tmp_path}/imgs/y/b.png\n".encode() + b"imgs/x/a.png\n"
    )
    listing = list_inputs(root.join("list.txt"))
    assert listing.inputs["rel"].to_pylist() == ["x/a.png", "y/b.png"]
    assert listing.repeated == 1  # a.png, named twice, is one input


def test_progress_lines_give_the_rate_and_time_left_from_the_first_results_on(capsys):
    line = ProgressLine(total=100, every_s=0.0, action="translated", noun="image")
    for done in (10, 40, 70, 100):
        time.sleep(0.01)
        line.update(done)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "translated 10 of 100 images (10%)"  # no rate yet: start-up only
    for text, done in zip(printed[1:], (40, 70), strict=True):
        assert re.fullmatch(
            rf"translated {done} of 100 images \({done}%\); [\d.]+ images/s; ETA 0:00:0\d", text
        ), text
    assert len(printed) == 3  # the last batch is the summary's to report


def test_the_summary_line_agrees_in_number():
    one = TranslateSummary(inputs=1, written=1, processed=1, seconds=2.0)
    assert one.line() == "1 image: 1 written, 0 failed; 0.5 images/s"
    many = TranslateSummary(inputs=48_210, written=48_197, earlier=48_000, failed=13, processed=210)
    assert many.line().startswith("48,210 images: 48,197 written (48,000 in earlier runs), 13 ")


# -- images ---------------------------------------------------------------------------------


# The decoder itself: tests/pipelines/test_images.py, with the pixels prepare stores.


def _input(
    data: bytes,
    side: str = "full",
    mode: str = "tile",
    tile: int = 32,
    load_size: int | None = None,
):
    return model_input(
        data, channels=3, side=side, tile=tile, mode=mode, load_size=load_size, max_pixels=1000
    )


def test_input_side_picks_a_half_of_an_aligned_pair():
    pair = np.concatenate([np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)], 1)
    data = encode(pair)
    assert _input(data, side="A")[0].max() == 0
    assert _input(data, side="B")[0].min() == 255
    assert _input(data)[0].shape == (8, 16, 3)
    with pytest.raises(BadImage, match="width 15 is odd"):
        _input(encode(pair[:, :15]), side="A")


def test_auto_mode_feeds_the_scale_training_saw_and_the_official_resize_without_a_record():
    data = encode(np.zeros((24, 40, 3), np.uint8))
    # Trained from sources resized to 48 px: the same resize, then tiles of 32.
    pixels, picture = _input(data, mode="auto", tile=32, load_size=48)
    assert pixels.shape == (48, 48, 3) and picture.size == (40, 24)
    # No record (an official *_net_G.pth): the official test's resize to the model's size.
    assert _input(data, mode="auto", tile=32)[0].shape == (32, 32, 3)
    assert _input(data, mode="resize", tile=32, load_size=48)[0].shape == (32, 32, 3)
    assert _input(data, mode="tile", tile=32, load_size=48)[0].shape == (24, 40, 3)


def test_a_reduced_scale_decode_still_gives_the_output_the_inputs_full_size(tmp_path):
    Image.fromarray(np.full((512, 1024, 3), 90, np.uint8)).save(tmp_path / "ab.jpg")
    url = Location.parse(str(tmp_path / "ab.jpg")).url
    batch = {"url": np.asarray([url], object), "output": np.asarray([url + ".png"], object)}
    out = read_and_decode(
        batch,
        storage_options={},
        max_pixels=10**6,
        channels=3,
        side="A",
        tile=32,
        mode="resize",
        load_size=None,
    )
    assert out["reason"][0] == ""
    assert (out["h"][0], out["w"][0]) == (32, 32)
    assert (out["height"][0], out["width"][0]) == (512, 512)  # the half, at its full size


# -- manifest -------------------------------------------------------------------------------


def _records(state: pa.Table) -> list[dict]:
    return sorted(state.to_pylist(), key=lambda r: r["input"])


def _statuses(state: pa.Table) -> dict[str, str]:
    return dict(zip(state["input"].to_pylist(), state["status"].to_pylist(), strict=True))


def test_the_latest_record_wins_and_compaction_keeps_it(tmp_path):
    dst = Location.parse(str(tmp_path))
    write_part(dst, [record("a", reason="corrupt"), record("b", output="out/b.png")])
    write_part(dst, [record("a", output="out/a.png")])
    # Latest by time, not by file: a record stamped earlier, in a part written later.
    write_part(dst, [{**record("b", reason="stale"), "time": 1.0}])
    state, parts = read_state(dst)
    assert len(parts) == 3
    assert _statuses(state) == {"a": "done", "b": "done"}
    assert _records(compact(dst)) == _records(state)
    again, parts = read_state(dst)
    assert _records(again) == _records(state) and parts == []


def test_the_manifest_is_one_json_record_per_line_sorted_by_input(tmp_path):
    dst = Location.parse(str(tmp_path))
    records = [record(u, output=f"out/{u}.png") for u in ("c", "a")]
    records.append(record("b", reason="cannot decode", note=""))
    write_part(dst, records)
    compact(dst)
    text = (tmp_path / "_manifest" / "manifest.jsonl").read_text()
    wanted = sorted(records, key=lambda r: r["input"])
    assert text == "".join(json.dumps(r, sort_keys=True) + "\n" for r in wanted)


def test_a_torn_manifest_line_is_skipped_and_the_rest_read(tmp_path):
    dst = Location.parse(str(tmp_path))
    lines = [json.dumps(record(u, output=f"out/{u}.png")) for u in ("a", "b")]
    manifest = dst.join("_manifest", "manifest.jsonl")
    manifest.write_bytes(f"{lines[0]}\n{lines[1]}\n".encode() + b'{"input": "c", "sta')
    write_part(dst, [record("d", output="out/d.png")])
    torn_part = dst.join("_manifest", "parts", "0-torn.jsonl")
    torn_part.write_bytes(b'{"input": "e", "status": "do\n' + json.dumps(record("f")).encode())
    state, _ = read_state(dst)
    assert _statuses(state) == {"a": "done", "b": "done", "d": "done", "f": "done"}


def test_a_rerun_translates_what_is_not_recorded_done_or_whose_output_is_gone(tmp_path, capsys):
    dst = Location.parse(str(tmp_path / "out"))
    inputs = [(f"/in/{name}.jpg", f"{name}.jpg") for name in "abcd"]
    jobs = plan(inputs_table(inputs), dst, suffix="", fmt="png")
    output = dict(zip(jobs["url"].to_pylist(), jobs["output"].to_pylist(), strict=True))
    for url in ("/in/a.jpg", "/in/b.jpg"):
        Location.parse(output[url]).write_bytes(b"png")
    write_part(
        dst,
        [
            record("/in/a.jpg", output=output["/in/a.jpg"]),
            record("/in/b.jpg", output=output["/in/b.jpg"]),
            record("/in/c.jpg", output=output["/in/c.jpg"]),  # done, but deleted since
            record("/in/d.jpg", reason="corrupt"),
        ],
    )
    todo, parts = _not_done(jobs, dst)
    assert len(parts) == 1
    assert todo["url"].to_pylist() == ["/in/c.jpg", "/in/d.jpg"]
    assert todo["output"].to_pylist() == [output["/in/c.jpg"], output["/in/d.jpg"]]
    assert capsys.readouterr().out == (
        f"1 output recorded as written is no longer in {dst.url} "
        f"(e.g. {output['/in/c.jpg']}); translating again\n"
    )


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    dst = Location.parse(str(tmp_path))
    check_job(dst, {"model": "m1", "format": "png"})
    check_job(dst, {"model": "m1", "format": "png"})
    with pytest.raises(UserError, match="format: 'png' -> 'jpg'"):
        check_job(dst, {"model": "m1", "format": "jpg"})


# -- test-time semantics --------------------------------------------------------------------


def _weights(use_dropout: bool) -> tuple[GeneratorConfig, dict]:
    torch.manual_seed(0)
    config = GeneratorConfig(netG="unet_128", num_downs=5, ngf=8, use_dropout=use_dropout)
    net = build_generator(config)
    for m in net.modules():  # batch norm with statistics of its own, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return config, net.state_dict()


@torch.inference_mode()
@pytest.mark.parametrize("channels_last", [False, True])
def test_eval_mode_matches_the_official_eval(channels_last):
    config, state = _weights(use_dropout=True)
    official = build_generator(config)
    official.load_state_dict(state)
    official.eval()
    ours = prepare_generator(config, state, Runtime(eval_mode=True, channels_last=channels_last))
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(ours(x), official(x), rtol=0, atol=1e-5)


@torch.no_grad()
def test_train_mode_in_a_batch_matches_the_official_test_one_image_at_a_time():
    config, state = _weights(use_dropout=False)  # dropout off: comparable outputs
    official = build_generator(config)
    official.load_state_dict(state)
    official.train()  # the official test without --eval, at its batch size of 1
    ours = prepare_generator(config, state, Runtime(eval_mode=False))
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    each = torch.cat([official(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(ours(x), each, rtol=0, atol=1e-5)


def test_bf16_autocast_is_decided_on_the_actors_device_and_stays_close_to_fp32():
    assert Runtime().uses_autocast() == native_bf16("cpu")
    assert Runtime(autocast=False).uses_autocast() is False
    config, state = _weights(use_dropout=False)
    model = {"config": config.to_dict(), "state_dict": {k: v.numpy() for k, v in state.items()}}
    images = [np.random.default_rng(i).integers(0, 256, (40, 56, 3), np.uint8) for i in range(3)]
    outputs = {}
    for autocast in (False, True):
        translator = Translator(model, Runtime(autocast=autocast, tile=32, overlap=8))
        assert translator.autocast is autocast
        with torch.inference_mode():
            outputs[autocast] = np.stack(translator._translate(images)).astype(int)
    diff = np.abs(outputs[True] - outputs[False])
    assert 0 < diff.max() <= 8 and diff.mean() < 1.0  # uint8 levels; bf16 did run


def test_actors_build_the_model_on_the_object_stores_read_only_arrays_without_a_copy(recwarn):
    config, state = _weights(use_dropout=False)
    arrays = {k: v.numpy().copy() for k, v in state.items()}
    for array in arrays.values():
        array.setflags(write=False)  # as Ray hands them out
    runtime = Runtime(tile=32, overlap=8, autocast=False)
    translator = Translator({"config": config.to_dict(), "state_dict": arrays}, runtime)
    addresses = {array.ctypes.data for array in arrays.values()}
    assert any(p.data_ptr() in addresses for p in translator.model.parameters())
    assert not [w for w in recwarn if "not writable" in str(w.message)]
    writable = {k: v.numpy() for k, v in state.items()}
    reference = Translator({"config": config.to_dict(), "state_dict": writable}, runtime)
    images = [np.random.default_rng(i).integers(0, 256, (40, 56, 3), np.uint8) for i in range(2)]
    with torch.inference_mode():
        for ours, theirs in zip(
            translator._translate(images), reference._translate(images), strict=True
        ):
            np.testing.assert_array_equal(ours, theirs)


def test_compile_takes_the_generator_through_torch_compile_in_the_mode_given(monkeypatch):
    compiled = {}

    def record_compile(module, **options):  # what torch.compile is asked to do
        compiled.update(options, module=module)
        return module

    monkeypatch.setattr(torch, "compile", record_compile)
    config, state = _weights(use_dropout=False)
    model = {"config": config.to_dict(), "state_dict": {k: v.numpy() for k, v in state.items()}}
    runtime = Runtime(compile=True, compile_mode="reduce-overhead", tile=32, overlap=8)
    translator = Translator(model, runtime)
    assert compiled == {"mode": "reduce-overhead", "module": translator.model}


@pytest.mark.parametrize(("crop_size", "tile"), [(64, 64), (48, 32), (16, 32), (256, 256)])
def test_tiles_are_the_size_the_model_was_trained_on(crop_size, tile):
    from types import SimpleNamespace

    from pipelines.translate.options import TranslateOptions
    from pipelines.translate.resources import tiles

    opts = TranslateOptions(model="m", input="i", output="o")
    loaded = SimpleNamespace(multiple=32, crop_size=crop_size)
    assert tiles(opts, loaded) == (tile, tile // 4)


# -- model actors on CPUs ------------------------------------------------------------------

GIB = 2**30


def test_cpu_actors_default_to_one_single_threaded_actor_per_core():
    from pipelines.translate.resources import cpu_layout

    layout = cpu_layout(16, actors=None, threads=None, memory=64 * GIB, bytes_per_actor=GIB)
    assert layout == (16, 1)
    assert cpu_layout(16, actors=None, threads=4, memory=64 * GIB, bytes_per_actor=GIB) == (4, 4)
    assert cpu_layout(16, actors=2, threads=None, memory=64 * GIB, bytes_per_actor=GIB) == (2, 8)


def test_the_default_actor_count_fits_the_memory():
    from pipelines.translate.resources import cpu_layout

    def layout(memory: float, actors: int | None = None, threads: int | None = None):
        return cpu_layout(16, actors=actors, threads=threads, memory=memory, bytes_per_actor=GIB)

    assert layout(6.5 * GIB) == (6, 1)
    assert layout(0.5 * GIB) == (1, 1)
    # What the user asks for, the user gets.
    assert layout(6.5 * GIB, actors=12, threads=1) == (12, 1)


def test_the_actor_estimate_covers_what_a_unet_256_actor_was_measured_to_hold():
    from pipelines.translate.resources import actor_bytes

    with torch.device("meta"):  # sizes only
        module = build_generator(GeneratorConfig(netG="unet_256"))
    # A translate actor at batch 8 on 256 x 256 JPEGs: 1.05 GB resident at its peak, 0.67 GB
    # of it its own (libraries and the weights in the object store are shared). Earlier
    # layouts, which copied the weights, held up to 1.39 GB.
    estimate = actor_bytes(module, batch_size=8, tile=256)
    assert 1.3e9 <= estimate <= 1.6e9
    assert actor_bytes(module, batch_size=16, tile=256) > estimate


def test_a_colorization_actor_colours_the_lightness_of_rgb_pictures():
    """An L -> ab model: RGB in, RGB out, and only the input's lightness matters."""
    from pix2pix_core.color import lab_to_rgb, rgb_to_lab

    torch.manual_seed(0)
    config = GeneratorConfig(netG="unet_128", num_downs=5, ngf=8, input_nc=1, output_nc=2)
    state = {k: v.numpy() for k, v in build_generator(config).state_dict().items()}
    runtime = Runtime(tile=32, overlap=8, autocast=False, colorization=True)
    translator = Translator({"config": config.to_dict(), "state_dict": state}, runtime)
    photo = np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8)
    lab = rgb_to_lab(torch.from_numpy(photo).permute(2, 0, 1)[None].double() / 255)
    lab[:, 1:] = 0  # the same lightness, no colour
    grey = (lab_to_rgb(lab)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    with torch.inference_mode():
        coloured, from_grey = translator._translate([photo, grey])
    assert coloured.shape == from_grey.shape == photo.shape
    assert np.abs(coloured.astype(int) - from_grey.astype(int)).max() <= 2
