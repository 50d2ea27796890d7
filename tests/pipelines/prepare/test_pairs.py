"""Decoding and validating single inputs: no Ray, no storage."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import ExifTags, Image

from pipelines.common.images import DEFAULT_MAX_PIXELS, decode_stored
from pipelines.common.storage import Location
from pipelines.prepare.pairs import (
    WORK_SCHEMA,
    BadInput,
    prepare_aligned,
    prepare_pair,
    process_batch,
)
from tests.bad_inputs import bad_files, odd_files

OPTS = {"load_size": 32, "direction": "AtoB", "max_pixels": DEFAULT_MAX_PIXELS}

# What each bad file's reason must say, in words a person understands.
EXPECTED_REASONS = {
    "zero_byte.jpg": "empty file",
    "truncated.jpg": "truncated",
    "bad_crc.png": "corrupt PNG",
    "garbage.png": "corrupt PNG",
    "notes.jpg": "not an image",
    "bomb.png": "decompression bomb",
}


def _png(array: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def _two_colours(width: int = 64, height: int = 32) -> np.ndarray:
    """Left half red, right half blue: A and B of an aligned image."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2, 0] = 255
    image[:, width // 2 :, 2] = 255
    return image


@pytest.mark.parametrize("name", sorted(EXPECTED_REASONS))
def test_every_bad_file_is_refused_with_a_reason(name):
    assert set(bad_files()) == set(EXPECTED_REASONS)
    with pytest.raises(BadInput, match=EXPECTED_REASONS[name]):
        prepare_aligned(bad_files()[name], **OPTS)


@pytest.mark.parametrize("name", sorted(odd_files()))
def test_unusual_modes_become_rgb_with_a_note(name):
    a, b, note = prepare_aligned(odd_files()[name], **OPTS)
    assert note.startswith("converted from")
    for side in (a, b):
        pixels = decode_stored(side)
        assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


def test_16_bit_is_scaled_not_clipped():
    a, _, note = prepare_aligned(odd_files()["gray16.png"], **OPTS)
    assert note == "converted from 16-bit grayscale"
    # The source is a horizontal ramp over the full 16-bit range: clipping at 255 would
    # make nearly every pixel white; scaling keeps the ramp.
    left = decode_stored(a)[..., 0]
    assert left.min() < 20 and 100 < left.max() < 160
    assert np.all(np.diff(left[0].astype(int)) >= 0)


def test_notes_name_the_side_and_the_dropped_alpha():
    _, _, note = prepare_aligned(odd_files()["rgba.png"], **OPTS)
    assert note == "converted from RGBA (alpha dropped)"
    gray, cmyk = odd_files()["gray.png"], odd_files()["cmyk.jpg"]
    _, _, note = prepare_pair(gray, cmyk, **OPTS)
    assert note == "A converted from grayscale; B converted from CMYK"


def test_exif_orientation_is_applied():
    shown = _two_colours()  # what a viewer shows: 64 x 32, red | blue
    stored = np.ascontiguousarray(np.rot90(shown, k=1))  # the camera wrote it rotated
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # "rotate 90 degrees clockwise to display"
    a, b, _ = prepare_aligned(_png(stored, exif=exif), **OPTS)
    assert decode_stored(a)[..., 0].mean() > 250  # A is red
    assert decode_stored(b)[..., 2].mean() > 250  # B is blue


def test_direction_swaps_input_and_target():
    data = _png(_two_colours())
    a, b, _ = prepare_aligned(data, **{**OPTS, "direction": "BtoA"})
    assert decode_stored(a)[..., 2].mean() > 250  # the input is now the right (blue) half
    assert decode_stored(b)[..., 0].mean() > 250


@pytest.mark.parametrize(
    ("shape", "reason"),
    [((32, 63), "width 63 is odd"), ((32, 256), "implausible shape"), ((64, 32), "implausible")],
)
def test_aligned_images_of_wrong_shape_are_refused(shape, reason):
    with pytest.raises(BadInput, match=reason):
        prepare_aligned(_png(np.zeros((*shape, 3), np.uint8)), **OPTS)


def test_pair_sides_must_have_the_same_size():
    a = _png(np.zeros((32, 32, 3), np.uint8))
    b = _png(np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(BadInput, match="A is 32 x 32 but B is 40 x 32"):
        prepare_pair(a, b, **OPTS)


def test_a_bad_b_side_is_named():
    a = _png(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(BadInput, match=r"^B: empty file") as err:
        prepare_pair(a, b"", **OPTS)
    assert err.value.side == "B"


def test_max_pixels_is_a_limit_of_our_own():
    data = _png(_two_colours())  # 2,048 pixels
    with pytest.raises(BadInput, match="over the limit of 1,000"):
        prepare_aligned(data, **{**OPTS, "max_pixels": 1000})


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_large_jpegs_decoded_at_reduced_scale_keep_the_seam_and_the_size_check():
    # 1024 x 512 A|B at load_size 32: decoded at 1/8 scale; the split is still on the seam.
    a, b, _ = prepare_aligned(_jpeg(_two_colours(1024, 512)), **OPTS)
    assert decode_stored(a)[..., 0].mean() > 245 and decode_stored(a)[..., 2].mean() < 10
    assert decode_stored(b)[..., 2].mean() > 245 and decode_stored(b)[..., 0].mean() < 10
    # A JPEG (decoded small) and a PNG of the same full size are a valid pair.
    photo = np.full((704, 704, 3), 90, np.uint8)
    a, b, _ = prepare_pair(_jpeg(photo), _png(photo), **OPTS)
    assert decode_stored(a).shape == decode_stored(b).shape == (32, 32, 3)


def test_colorization_stores_the_whole_picture_as_both_sides(tmp_path):
    """--dataset_mode colorization: one RGB picture per input, never split in halves."""
    files = {"photo.png": _png(_two_colours()), "empty.png": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    rows = [
        {"key": name[:-4], "split": "train", "a_url": str(tmp_path / name), "b_url": None}
        for name in files
    ]
    dst = Location.parse(str(tmp_path / "out"))
    results = process_batch(
        pa.Table.from_pylist(rows, schema=WORK_SCHEMA),
        dst_url=dst.url,
        dst_options={},
        src_options={},
        dataset_mode="colorization",
        **OPTS,
    )
    assert dict(zip(*results.select(["key", "reason"]).to_pydict().values(), strict=True)) == {
        "photo": None,
        "empty": "empty file (0 bytes)",
    }
    (stored,) = pq.read_table(dst.join("train").path, filesystem=dst.arrow_fs).to_pylist()
    assert stored["a"] == stored["b"]
    pixels = decode_stored(stored["a"])
    assert pixels.shape == (32, 32, 3)  # the 64 x 32 picture resized whole, not halved
    assert pixels[:, :14, 0].min() > 245 and pixels[:, 18:, 2].min() > 245  # red | blue
