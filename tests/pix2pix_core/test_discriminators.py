"""--netD basic | n_layers | pixel, --n_layers_D and the paper's patch sizes."""

import io
import json

import pytest
import torch

from pix2pix_core import (
    DiscriminatorConfig,
    GeneratorConfig,
    Pix2Pix,
    build_discriminator,
    load_checkpoint,
    save_checkpoint,
)
from pix2pix_core.networks import (
    DISCRIMINATORS,
    NLayerDiscriminator,
    PixelDiscriminator,
    init_weights,
)

from .official_like import zero_layer_patchgan


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_zero_layers_is_the_officials_small_patchgan_not_the_pixel_gan():
    net = build_discriminator(DiscriminatorConfig(netD="n_layers", n_layers=0))
    assert isinstance(net, NLayerDiscriminator)
    assert n_params(net) == 72_897  # the official count, batch norm, input_nc 6, ndf 64
    official = zero_layer_patchgan(6, 64)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in official.state_dict().items()}
    # --n_layers_D 0 alone (netD left to the patch size's default) builds the same.
    assert isinstance(build_discriminator(DiscriminatorConfig(n_layers=0)), NLayerDiscriminator)


@pytest.mark.parametrize(
    ("cfg", "kind", "layers", "field"),
    [
        (DiscriminatorConfig(), "basic", 3, 70),
        (DiscriminatorConfig(netD="basic"), "basic", 3, 70),
        (DiscriminatorConfig(netD="n_layers"), "n_layers", 3, 70),  # the official default 3
        (DiscriminatorConfig(netD="n_layers", n_layers=5), "n_layers", 5, 286),
        (DiscriminatorConfig(netD="n_layers", n_layers=0), "n_layers", 0, 16),
        (DiscriminatorConfig(netD="pixel"), "pixel", None, 1),
        (DiscriminatorConfig(patch_size=1), "pixel", None, 1),
        (DiscriminatorConfig(patch_size=16), "n_layers", 1, 16),
        (DiscriminatorConfig(patch_size=286), "n_layers", 5, 286),
        (DiscriminatorConfig(n_layers=4), "n_layers", 4, 142),
        (DiscriminatorConfig(netD="pixel", patch_size=1), "pixel", None, 1),
        (DiscriminatorConfig(netD="n_layers", n_layers=1, patch_size=16), "n_layers", 1, 16),
    ],
)
def test_netD_n_layers_and_patch_size_resolve_to_one_network(cfg, kind, layers, field):
    assert (cfg.kind, cfg.layers, cfg.receptive_field) == (kind, layers, field)
    net = build_discriminator(cfg)
    assert isinstance(net, PixelDiscriminator if kind == "pixel" else NLayerDiscriminator)


def test_basic_and_its_patch_size_build_the_official_70x70_patchgan():
    basic = build_discriminator(DiscriminatorConfig(netD="basic"))
    assert n_params(basic) == 2_768_705
    assert (
        basic.state_dict().keys() == build_discriminator(DiscriminatorConfig()).state_dict().keys()
    )


@pytest.mark.parametrize(
    ("options", "quoted"),
    [
        ({"netD": "basic", "n_layers": 5}, "netD 'basic' with n_layers 5"),
        ({"netD": "pixel", "n_layers": 0}, "netD 'pixel' with n_layers 0"),
        ({"netD": "pixel", "patch_size": 286}, "patch_size 286 contradicts netD 'pixel'"),
        ({"n_layers": 4, "patch_size": 16}, "patch_size 16 contradicts n_layers 4"),
        ({"netD": "n_layers", "patch_size": 16}, "patch_size 16 contradicts netD 'n_layers'"),
        ({"netD": "patchgan"}, "'patchgan'; valid discriminators: basic, n_layers, pixel"),
        ({"patch_size": 42}, "42"),
        ({"n_layers": -1}, "-1"),
    ],
)
def test_conflicting_choices_are_refused_quoting_the_values(options, quoted):
    with pytest.raises(ValueError) as refused:
        DiscriminatorConfig(**options)
    assert quoted in str(refused.value)


def test_the_registry_names_the_valid_discriminators():
    with pytest.raises(KeyError, match="basic, n_layers, pixel"):
        DISCRIMINATORS["multiscale"]


def test_receptive_field_of_zero_layers_is_measured_16():
    cfg = DiscriminatorConfig(netD="n_layers", n_layers=0, ndf=4)
    net = init_weights(build_discriminator(cfg)).eval()
    x = torch.randn(1, 6, 64, 64, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = (x.grad.abs().sum(dim=(0, 1)) > 0).any(dim=1).nonzero()
    assert rows.max() - rows.min() + 1 == cfg.receptive_field == 16


def test_a_checkpoint_from_before_netD_with_n_layers_0_still_loads_its_pixel_gan():
    model = Pix2Pix(
        GeneratorConfig(ngf=4, num_downs=5), DiscriminatorConfig(netD="pixel", ndf=4), seed=0
    )
    payload = torch.load(io.BytesIO(save_checkpoint(model)), weights_only=True)
    config = json.loads(payload["config"])
    # How such a checkpoint spelled the pixel GAN: no netD, n_layers 0.
    config["discriminator"] = {
        "patch_size": 1,
        "n_layers": 0,
        "ndf": 4,
        "norm": "batch",
        "input_nc": 6,
    }
    payload["config"] = json.dumps(config)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    restored, _ = load_checkpoint(buffer.getvalue())
    assert restored.discriminator_config.kind == "pixel"
    for key, value in model.discriminator_module.state_dict().items():
        assert torch.equal(restored.discriminator_module.state_dict()[key], value), key
