"""Generator and discriminator: official sizes, structure, receptive fields, config errors."""

import pytest
import torch

from pix2pix_core import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
)
from pix2pix_core.networks import init_weights


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("netG", "norm", "expected"),
    [
        ("unet_256", "batch", 54_413_955),
        ("unet_256", "instance", 54_409_603),
        ("unet_128", "batch", 41_828_995),
    ],
)
def test_generator_parameter_counts_match_official(netG, norm, expected):
    assert n_params(build_generator(GeneratorConfig(netG=netG, norm=norm))) == expected


def test_discriminator_70_parameter_count_matches_official():
    assert n_params(build_discriminator(DiscriminatorConfig())) == 2_768_705


def test_generator_state_dict_has_official_keys_and_shapes():
    state = build_generator(GeneratorConfig()).state_dict()
    inner = "model.model.1" + ".model.3" * 6  # the innermost block of unet_256
    expected = {
        "model.model.0.weight": (64, 3, 4, 4),  # outermost down conv: no bias under batch norm
        "model.model.1.model.1.weight": (128, 64, 4, 4),
        "model.model.1.model.2.running_mean": (128,),
        "model.model.3.weight": (128, 3, 4, 4),  # outermost up conv (transposed), with bias
        "model.model.3.bias": (3,),
        f"{inner}.model.1.weight": (512, 512, 4, 4),
        f"{inner}.model.3.weight": (512, 512, 4, 4),
        f"{inner}.model.4.weight": (512,),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "model.model.0.bias" not in state
    assert f"{inner}.model.2.weight" not in state  # innermost has no down norm


def test_discriminator_state_dict_has_official_keys():
    state = build_discriminator(DiscriminatorConfig()).state_dict()
    assert tuple(state["model.0.weight"].shape) == (64, 6, 4, 4)
    assert tuple(state["model.8.weight"].shape) == (512, 256, 4, 4)
    assert tuple(state["model.11.weight"].shape) == (1, 512, 4, 4)
    pixel = build_discriminator(DiscriminatorConfig(patch_size=1)).state_dict()
    assert tuple(pixel["net.0.weight"].shape) == (64, 6, 1, 1)


def test_state_dict_loads_strictly_into_a_fresh_network():
    cfg = GeneratorConfig(ngf=8)
    state = build_generator(cfg).state_dict()
    build_generator(cfg).load_state_dict(state, strict=True)
    d_cfg = DiscriminatorConfig(ndf=8, patch_size=286)
    build_discriminator(d_cfg).load_state_dict(build_discriminator(d_cfg).state_dict(), strict=True)


def test_dropout_sits_in_the_ngf8_middle_blocks_only():
    net = build_generator(GeneratorConfig(ngf=4))
    dropouts = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 3 and all(d.p == 0.5 for d in dropouts)  # num_downs - 5
    assert not any(
        isinstance(m, torch.nn.Dropout)
        for m in build_generator(GeneratorConfig(ngf=4, use_dropout=False)).modules()
    )


@pytest.mark.parametrize(("netG", "size"), [("unet_128", 128), ("unet_256", 256)])
def test_generator_output_shape(netG, size):
    net = build_generator(GeneratorConfig(netG=netG, ngf=4, output_nc=1))
    with torch.no_grad():
        out = net(torch.zeros(2, 3, size, size))
    assert out.shape == (2, 1, size, size)
    assert out.abs().max() <= 1.0  # tanh


@pytest.mark.parametrize(("size", "patch", "side"), [(256, 70, 30), (128, 70, 14), (256, 1, 256)])
def test_discriminator_output_shape(size, patch, side):
    net = build_discriminator(DiscriminatorConfig(patch_size=patch, ndf=4))
    with torch.no_grad():
        assert net(torch.zeros(1, 6, size, size)).shape == (1, 1, side, side)


@pytest.mark.parametrize("patch", [1, 16, 70, 286])
def test_receptive_field_measured_by_gradient(patch):
    cfg = DiscriminatorConfig(patch_size=patch, ndf=4)
    assert cfg.receptive_field == patch
    net = init_weights(build_discriminator(cfg)).eval()  # eval: batch stats would couple pixels
    size = 2 * patch + 64
    x = torch.randn(1, 6, size, size, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    seen = x.grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = seen.any(dim=1).nonzero(), seen.any(dim=0).nonzero()
    assert rows.min() > 0 and rows.max() < size - 1  # not clipped by the border
    assert rows.max() - rows.min() + 1 == patch
    assert cols.max() - cols.min() + 1 == patch


def test_n_layers_overrides_patch_size():
    cfg = DiscriminatorConfig(patch_size=70, n_layers=4)
    assert cfg.layers == 4 and cfg.receptive_field == 142


def test_num_downs_overrides_depth():
    assert GeneratorConfig(netG="unet_256").depth == 8
    assert GeneratorConfig(netG="unet_256", num_downs=5).depth == 5


def test_init_weights_follows_official_normal_init():
    net = init_weights(build_generator(GeneratorConfig(ngf=16)), init_gain=0.02)
    conv = net.model.model[1].model[1].weight
    bn = net.model.model[1].model[2]
    assert abs(conv.std().item() - 0.02) < 0.002 and abs(conv.mean().item()) < 0.002
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and torch.all(bn.bias == 0)
    assert torch.all(net.model.model[3].bias == 0)


@pytest.mark.parametrize(
    ("factory", "bad"),
    [
        (lambda: GeneratorConfig(netG="unet_512"), "'unet_512'"),
        (lambda: GeneratorConfig(norm="layer"), "'layer'"),
        (lambda: GeneratorConfig(ngf=0), "0"),
        (lambda: GeneratorConfig(num_downs=3), "3"),
        (lambda: DiscriminatorConfig(patch_size=42), "42"),
        (lambda: DiscriminatorConfig(norm="group"), "'group'"),
        (lambda: DiscriminatorConfig(n_layers=-1), "-1"),
    ],
)
def test_bad_network_configs_name_the_bad_value(factory, bad):
    with pytest.raises(ValueError, match=bad):
        factory()


def test_unknown_norm_error_lists_valid_names():
    with pytest.raises(ValueError, match="instance"):
        GeneratorConfig(norm="bogus")
