"""The official --preprocess modes' sizes, and the test-time scale rule."""

import pytest

from pix2pix_core.geometry import crops, min_decoded_side, model_input_size, resized_size


def _official_scale_width(ow: int, oh: int, target: int) -> tuple[int, int]:
    """The official __scale_width without its crop_size floor (training checks the crop)."""
    if ow == target:
        return ow, oh
    return target, int(target * oh / ow)


def _official_make_power_2(ow: int, oh: int, base: int = 4) -> tuple[int, int]:
    return int(round(ow / base) * base), int(round(oh / base) * base)


@pytest.mark.parametrize("size", [(256, 256), (600, 400), (1000, 333), (37, 91)])
def test_each_mode_resizes_as_the_official_get_transform(size):
    w, h = size
    assert resized_size(w, h, preprocess="resize_and_crop", load_size=286) == (286, 286)
    assert resized_size(w, h, preprocess="crop", load_size=286) == (w, h)
    for mode in ("scale_width", "scale_width_and_crop"):
        assert resized_size(w, h, preprocess=mode, load_size=286) == _official_scale_width(
            w, h, 286
        )
    assert resized_size(w, h, preprocess="none", load_size=286) == _official_make_power_2(w, h)


def test_which_modes_crop():
    assert [m for m in ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
            if crops(m)] == ["resize_and_crop", "crop", "scale_width_and_crop"]  # fmt: skip
    with pytest.raises(ValueError, match="unknown preprocess 'zoom'"):
        crops("zoom")


def test_test_time_meets_the_model_at_its_training_scale():
    # A model trained from sources resized to 286: the same resize, then tiles of 256.
    assert model_input_size(600, 400, mode="auto", tile=256, load_size=286) == (286, 286)
    assert model_input_size(
        600, 400, mode="auto", tile=256, load_size=286, preprocess="scale_width"
    ) == (286, 190)
    assert model_input_size(600, 400, mode="auto", tile=256, load_size=286, preprocess="crop") == (
        600,
        400,
    )
    # No record (an official *_net_G.pth): the official test's resize to the model's size.
    assert model_input_size(600, 400, mode="auto", tile=256, load_size=None) == (256, 256)
    assert model_input_size(600, 400, mode="resize", tile=256, load_size=286) == (256, 256)
    assert model_input_size(600, 400, mode="tile", tile=256, load_size=286) == (600, 400)
    # A reduced-scale decode never keeps fewer pixels than the resize needs.
    assert min_decoded_side("resize_and_crop", 286) == 286 and min_decoded_side("crop", 286) == 0
