"""The one image module, and the rule it exists for: prepare and translate see the same pixels."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import ExifTags, Image

from pipelines.common.images import (
    DEFAULT_MAX_PIXELS,
    BadImage,
    decode,
    decode_stored,
    encode,
    split_aligned,
)
from pipelines.common.storage import Location
from pipelines.prepare.pairs import WORK_SCHEMA, process_batch
from pipelines.translate import io as translate_io
from pix2pix_core.geometry import resample
from tests.bad_inputs import _photo, _png_bomb, bad_files, odd_files


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(array: np.ndarray, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        exif[ExifTags.Base.Orientation] = orientation
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90, exif=exif)
    return buf.getvalue()


def _texture(width: int, height: int) -> np.ndarray:
    """Fine detail everywhere, so a reduced-scale decode differs from a full one shrunk."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [np.sin(x / 3.1) * np.cos(y / 2.3), np.sin((x + y) / 4.7), np.cos(x * y / 900)]
    return np.stack([(c + 1) * 127.5 for c in channels], axis=-1).astype(np.uint8)


# -- the module -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_each_bad_file_gets_a_reason(name):
    with pytest.raises(BadImage) as err:
        decode(bad_files()[name], max_pixels=10_000_000)
    assert len(str(err.value)) > 10


def test_the_pixel_limit_is_checked_before_decoding():
    data = _png(np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(BadImage, match="50 x 40 = 2,000 pixels, over the limit of 1,999"):
        decode(data, max_pixels=1999)


def test_our_limit_replaces_pillows_and_leaves_it_as_it_was():
    # 90,250,000 pixels: over Pillow's default, under ours. Only the header is genuine, so
    # the decode gets past both limits and fails on the pixel data.
    saved = Image.MAX_IMAGE_PIXELS
    with pytest.raises(BadImage, match="truncated or corrupt PNG data"):
        decode(_png_bomb(9500, 9500), max_pixels=100_000_000)
    with pytest.raises(BadImage, match="over the limit"):
        decode(_png_bomb(9500, 9500))
    assert DEFAULT_MAX_PIXELS == 89_478_485
    assert saved == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("name", sorted(odd_files()))
def test_odd_modes_become_8_bit_rgb(name):
    picture = decode(odd_files()[name], max_pixels=10_000_000)
    assert picture.pixels.dtype == np.uint8
    assert picture.pixels.shape == (32, 64, 3)
    assert picture.size == (64, 32)
    assert picture.note.startswith("converted from")
    assert (picture.alpha is not None) == (name == "rgba.png")


@pytest.mark.parametrize("name", sorted(odd_files()))
def test_odd_modes_become_grayscale_for_one_channel_models(name):
    picture = decode(odd_files()[name], channels=1)
    assert picture.pixels.shape == (32, 64, 1)
    colour = name in ("palette.png", "rgba.png", "cmyk.jpg")
    assert picture.note.endswith(" to grayscale") == colour
    assert bool(picture.note) == (name != "gray.png")


def test_16_bit_is_scaled_not_clipped():
    picture = decode(odd_files()["gray16.png"], max_pixels=10_000_000)
    reference = np.asarray(Image.open(io.BytesIO(odd_files()["gray16.png"])))
    assert picture.note == "converted from 16-bit grayscale"
    np.testing.assert_array_equal(picture.pixels[..., 0], np.rint(reference / 257))
    assert (picture.pixels[..., 0] == picture.pixels[..., 2]).all()


def test_floats_in_0_1_are_scaled_and_in_0_255_kept_and_nan_is_0():
    gray = np.repeat(_photo()[..., :1], 3, axis=-1)  # the 8-bit ramp they hold
    for name, note in (("float01.tif", "float 0-1"), ("float255.tif", "float 0-255")):
        picture = decode(odd_files()[name])
        assert picture.note == f"converted from {note}, NaN as 0"
        assert picture.pixels[5, 40].tolist() == [0, 0, 0]  # the NaN pixel
        same = np.ones(gray.shape[:2], bool)
        same[5, 40] = False
        np.testing.assert_array_equal(picture.pixels[same], gray[same])
        assert picture.pixels.max() == 255  # not clipped to black, not all white


def test_exif_orientation_gives_the_size_as_shown():
    shown = _texture(64, 32)
    stored = np.ascontiguousarray(np.rot90(shown, k=1))  # 32 x 64, the camera's way
    picture = decode(_jpeg(stored, orientation=6))
    assert picture.size == (64, 32) and picture.pixels.shape == (32, 64, 3)


def test_large_jpegs_decode_at_reduced_scale_only_when_asked_and_never_below_the_size():
    data = _jpeg(_texture(1024, 512))
    assert decode(data).pixels.shape == (512, 1024, 3)
    small = decode(data, min_side=64)
    assert small.pixels.shape == (64, 128, 3)  # 1/8: the height is down to min_side
    assert small.size == (1024, 512)
    assert decode(data, min_side=100).pixels.shape == (128, 256, 3)  # 1/8 would be < 100
    odd = _jpeg(_texture(1000, 512))  # a side not a multiple of 16: full decode
    assert decode(odd, min_side=64).pixels.shape == (512, 1000, 3)


def test_split_aligned_checks_the_full_size_and_cuts_on_the_seam():
    pair = np.concatenate([np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)], 1)
    left, right = split_aligned(decode(_png(pair)))
    assert left.pixels.max() == 0 and right.pixels.min() == 255
    assert left.size == right.size == (16, 16)
    with pytest.raises(BadImage, match="width 31 is odd"):
        split_aligned(decode(_png(np.zeros((16, 31, 3), np.uint8))))
    with pytest.raises(BadImage, match="implausible shape"):
        split_aligned(decode(_png(np.zeros((16, 256, 3), np.uint8))))


def test_resize_is_pil_bicubic_for_rgb_and_grayscale():
    image = _texture(40, 24)
    expected = np.asarray(Image.fromarray(image).resize((16, 20), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(resample(image, 20, 16), expected)
    assert resample(image[..., :1], 20, 16).shape == (20, 16, 1)
    assert resample(image, 24, 40) is image


def test_alpha_is_reattached_to_png_and_reported_for_jpg():
    picture = decode(odd_files()["rgba.png"], max_pixels=10_000_000)
    data, note = encode(picture.pixels, "png", picture.alpha)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "RGBA"
        assert np.array_equal(np.asarray(img.getchannel("A")), picture.alpha)
    assert note == "alpha kept"
    _, note = encode(picture.pixels, "jpg", picture.alpha)
    assert "alpha dropped" in note


def test_stored_tiff_round_trips_exactly():
    image = _texture(32, 32)
    data, note = encode(image, "TIFF")
    assert data.startswith(b"II*\x00") and note == ""
    np.testing.assert_array_equal(decode_stored(data), image)
    with pytest.raises(ValueError, match="unknown format 'gif'"):
        encode(image, "gif")


# -- one rule for both jobs -----------------------------------------------------------------

LOAD = 32


def _zoo() -> dict[str, bytes]:
    """Every odd file, an ordinary RGB JPEG, EXIF-rotated ones, and large JPEGs that take the
    reduced-scale decode (their sides divide by 16), each a plausible aligned A|B image."""
    return {
        **odd_files(),
        "photo.jpg": _jpeg(_texture(64, 32)),
        "rotated.jpg": _jpeg(np.ascontiguousarray(np.rot90(_texture(64, 32))), orientation=6),
        **_reduced(),
    }


def _reduced() -> dict[str, bytes]:
    """JPEGs that prepare decodes at a reduced scale at LOAD: 1/8 (large), and 1/4 for an
    A|B image (medium: 1/8 would be enough for one picture, not for a half)."""
    return {
        "large.jpg": _jpeg(_texture(1024, 512)),
        "large_rotated.jpg": _jpeg(
            np.ascontiguousarray(np.rot90(_texture(1024, 512), k=-1)), orientation=8
        ),
        "medium.jpg": _jpeg(_texture(512, 256)),
    }


def _write(root, files: dict[str, bytes]) -> dict[str, str]:
    urls = {}
    for name, data in files.items():
        (root / name).write_bytes(data)
        urls[name] = Location.parse(str(root / name)).url
    return urls


def _prepare(tmp_path, urls: dict[str, str], *, pairs: bool, load_size: int = LOAD):
    """What prepare's task stores for each input (decoded as training reads it), and each
    input's result row."""
    work = pa.Table.from_pylist(
        [
            {"key": name, "split": "train", "a_url": url, "b_url": url if pairs else None}
            for name, url in urls.items()
        ],
        schema=WORK_SCHEMA,
    )
    dst = tmp_path / ("pairs" if pairs else "aligned")
    results = process_batch(
        work,
        dst_url=str(dst),
        dst_options={},
        src_options={},
        load_size=load_size,
        direction="AtoB",
        max_pixels=DEFAULT_MAX_PIXELS,
    ).to_pylist()
    stored = {}
    if (dst / "train").exists():
        for row in pq.read_table(dst / "train").to_pylist():
            stored[row["key"]] = (decode_stored(row["a"]), decode_stored(row["b"]))
    return stored, {r["key"]: r for r in results}


def _translate(
    urls: dict[str, str], *, side: str, mode: str, tile: int = LOAD, load_size: int | None = None
):
    """What translate's read stage hands the model for each input, and its reason."""
    batch = {
        "url": np.asarray(list(urls.values()), dtype=object),
        "output": np.asarray([f"{u}.out.png" for u in urls.values()], dtype=object),
    }
    out = translate_io.read_and_decode(
        batch,
        storage_options={},
        max_pixels=DEFAULT_MAX_PIXELS,
        channels=3,
        side=side,
        tile=tile,
        mode=mode,
        load_size=load_size,
    )
    fed = {}
    for i, name in enumerate(urls):
        args = (out["pixels"][i], out["h"][i], out["w"][i], out["c"][i])
        fed[name] = (translate_io.unpack(*args), str(out["reason"][i]))
    return fed


def _assert_same(stored: dict, fed: dict, index: int) -> None:
    assert set(stored) == set(fed)
    for name, images in stored.items():
        pixels, reason = fed[name]
        assert reason == "", (name, reason)
        assert pixels.shape == images[index].shape, name
        assert np.array_equal(pixels, images[index]), f"{name}: prepare and translate differ"


@pytest.fixture(scope="module")
def zoo_urls(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("zoo"), _zoo())


def test_an_aligned_file_gives_the_same_pixels_to_training_and_to_translate(tmp_path, zoo_urls):
    stored, results = _prepare(tmp_path, zoo_urls, pairs=False)
    assert all(r["reason"] is None for r in results.values()), results
    _assert_same(stored, _translate(zoo_urls, side="A", mode="resize"), 0)
    _assert_same(stored, _translate(zoo_urls, side="B", mode="resize"), 1)


def test_a_separate_file_gives_the_same_pixels_to_training_and_to_translate(tmp_path, zoo_urls):
    stored, results = _prepare(tmp_path, zoo_urls, pairs=True)
    assert all(r["reason"] is None for r in results.values()), results
    _assert_same(stored, _translate(zoo_urls, side="full", mode="resize"), 0)


def test_by_default_translate_feeds_the_model_at_the_scale_training_saw(tmp_path, zoo_urls):
    """A model trained from sources resized to load_size gets every image so resized, the
    stored pixels exactly (then in tiles of its own size); one that recorded no load_size
    (an official *_net_G.pth) gets the official test's resize to its own size."""
    stored, _ = _prepare(tmp_path, zoo_urls, pairs=True, load_size=2 * LOAD)
    _assert_same(stored, _translate(zoo_urls, side="full", mode="auto", load_size=2 * LOAD), 0)
    at_model_size, _ = _prepare(tmp_path / "official", zoo_urls, pairs=True, load_size=LOAD)
    _assert_same(at_model_size, _translate(zoo_urls, side="full", mode="auto"), 0)
    _assert_same(at_model_size, _translate(zoo_urls, side="full", mode="resize"), 0)


@pytest.mark.parametrize(
    "min_side", [lambda asked: 0, lambda asked: asked // 2], ids=["no_reduced_decode", "half"]
)
def test_the_identity_fails_if_translate_asks_for_another_reduced_scale(
    tmp_path, zoo_urls, monkeypatch, min_side
):
    """The tests above can fail: a reduced-scale decode skipped, or asked for the half's
    size instead of twice it, gives other pixels."""
    reduced = {name: zoo_urls[name] for name in _reduced()}
    stored, _ = _prepare(tmp_path, reduced, pairs=False)
    asked = translate_io.decode
    monkeypatch.setattr(
        translate_io,
        "decode",
        lambda data, **kw: asked(data, **{**kw, "min_side": min_side(kw["min_side"])}),
    )
    fed = _translate(reduced, side="A", mode="resize")
    differ = [name for name in reduced if not np.array_equal(fed[name][0], stored[name][0])]
    assert differ == (list(reduced) if min_side(64) == 0 else ["medium.jpg"])


def test_every_bad_file_is_a_failure_with_a_reason_in_both_jobs(tmp_path):
    urls = _write(tmp_path, bad_files())
    stored, results = _prepare(tmp_path, urls, pairs=False)
    assert stored == {}
    assert all(len(results[name]["reason"]) > 10 for name in urls), results
    for name, (pixels, reason) in _translate(urls, side="full", mode="resize").items():
        assert len(reason) > 10 and pixels.size == 0, name
    # In a separate pair, the bad side is the one named.
    good = _write(tmp_path, {"good.png": _png(_texture(32, 32))})["good.png"]
    work = pa.Table.from_pylist(
        [{"key": n, "split": "train", "a_url": good, "b_url": u} for n, u in urls.items()],
        schema=WORK_SCHEMA,
    )
    rows = process_batch(
        work,
        dst_url=str(tmp_path / "bad_b"),
        dst_options={},
        src_options={},
        load_size=LOAD,
        direction="AtoB",
        max_pixels=DEFAULT_MAX_PIXELS,
    ).to_pylist()
    assert all(r["reason"].startswith("B: ") and r["url"] == urls[r["key"]] for r in rows)


def test_no_job_leaves_pillows_global_limit_changed(tmp_path, zoo_urls):
    urls = {**zoo_urls, **_write(tmp_path, bad_files())}
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1_234_567  # whatever the process had set
    try:
        _prepare(tmp_path, urls, pairs=False)
        assert Image.MAX_IMAGE_PIXELS == 1_234_567
        _translate(urls, side="full", mode="tile")
        _translate(urls, side="A", mode="resize")
        assert Image.MAX_IMAGE_PIXELS == 1_234_567
    finally:
        Image.MAX_IMAGE_PIXELS = saved
