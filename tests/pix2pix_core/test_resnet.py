"""--netG resnet_9blocks | resnet_6blocks against the official ResnetGenerator."""

import pytest
import torch

from pix2pix_core import GeneratorConfig, build_generator
from pix2pix_core.networks import GENERATORS, init_weights

from .helpers import image_pair
from .official_like import ResnetLike, init_like


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("netG", "expected"), [("resnet_9blocks", 11_383_427), ("resnet_6blocks", 7_841_411)]
)
def test_resnet_parameter_counts_match_official(netG, expected):
    # The official counts with batch norm and dropout off (dropout adds no parameters).
    net = build_generator(GeneratorConfig(netG=netG, use_dropout=False))
    assert n_params(net) == expected
    assert n_params(ResnetLike(3, 3, 64, int(netG[7]), "batch", False)) == expected


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("use_dropout", [True, False])
@pytest.mark.parametrize(("netG", "n_blocks"), [("resnet_9blocks", 9), ("resnet_6blocks", 6)])
def test_resnet_state_dict_is_the_officials_and_computes_the_same(
    netG, n_blocks, norm, use_dropout
):
    cfg = GeneratorConfig(netG=netG, ngf=4, norm=norm, use_dropout=use_dropout, output_nc=1)
    ours = build_generator(cfg)
    official = ResnetLike(3, 1, 4, n_blocks, norm, use_dropout)
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in official.state_dict().items()}
    torch.manual_seed(3)
    init_weights(ours)
    official.load_state_dict(ours.state_dict(), strict=True)
    x = image_pair(batch=2, size=32)[0]
    with torch.no_grad():
        # Same seed for dropout on both sides; train mode: batch statistics.
        torch.manual_seed(4)
        expected = official(x)
        torch.manual_seed(4)
        assert torch.equal(ours(x), expected)


def test_resnet_keys_follow_the_official_slots():
    state = build_generator(GeneratorConfig(netG="resnet_6blocks", ngf=8)).state_dict()
    assert tuple(state["model.1.weight"].shape) == (8, 3, 7, 7)  # stem after ReflectionPad2d(3)
    assert "model.1.bias" not in state  # no bias under batch norm
    assert tuple(state["model.10.conv_block.1.weight"].shape) == (32, 32, 3, 3)
    assert "model.10.conv_block.6.weight" in state  # dropout (the pix2pix default) is slot 4
    assert tuple(state["model.16.weight"].shape) == (32, 16, 3, 3)  # transposed: in, out
    assert tuple(state["model.23.weight"].shape) == (3, 8, 7, 7) and "model.23.bias" in state


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_types_draw_what_the_official_init_weights_draws(init_type):
    cfg = GeneratorConfig(netG="resnet_6blocks", ngf=4)
    ours, official = build_generator(cfg), ResnetLike(3, 3, 4, 6, "batch", True)
    torch.manual_seed(11)
    init_weights(ours, init_type, init_gain=0.05)
    torch.manual_seed(11)
    init_like(official, init_type, 0.05)
    for (key, value), theirs in zip(
        ours.state_dict().items(), official.state_dict().values(), strict=True
    ):
        assert torch.equal(value, theirs), key


def test_resnet_keeps_the_input_size_in_multiples_of_4():
    cfg = GeneratorConfig(netG="resnet_9blocks", ngf=4)
    assert (cfg.depth, cfg.multiple, cfg.default_crop_size) == (2, 4, 256)
    net = build_generator(cfg)
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 36, 44)).shape == (1, 3, 36, 44)
        assert net(torch.zeros(1, 3, 34, 34)).shape != (1, 3, 34, 34)  # why the multiple is 4


def test_unet_size_multiple_and_crop():
    assert GeneratorConfig().multiple == 256 and GeneratorConfig().default_crop_size == 256
    assert GeneratorConfig(netG="unet_128").multiple == 128
    assert GeneratorConfig(num_downs=5).multiple == 32


def test_num_downs_is_refused_for_a_resnet():
    with pytest.raises(ValueError, match="num_downs 6"):
        GeneratorConfig(netG="resnet_9blocks", num_downs=6)


def test_the_registry_names_the_valid_generators():
    assert list(GENERATORS) == ["unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks"]
    with pytest.raises(KeyError, match="resnet_9blocks, resnet_6blocks"):
        GENERATORS["resnet_12blocks"]
    with pytest.raises(ValueError, match=r"'resnet_12blocks'.*unet_256, unet_128, resnet_9blocks"):
        GeneratorConfig(netG="resnet_12blocks")
