"""Pix2Pix.train_step, translate, schedules and training config validation."""

import pytest
import torch

from pix2pix_core import DiscriminatorConfig, GeneratorConfig, Pix2Pix, TrainingConfig
from pix2pix_core.precision import native_bf16
from pix2pix_core.training import LOSS_NAMES

from .helpers import image_pair, tiny_model


def test_train_step_returns_the_official_loss_terms():
    model = tiny_model()
    losses = model.train_step(*image_pair())
    assert set(losses) == set(LOSS_NAMES) == {"G_GAN", "G_L1", "D_real", "D_fake"}
    assert all(isinstance(v, float) for v in losses.values())
    # G_L1 is reported already weighted by lambda_L1 (100), like the official log.
    assert 10 < losses["G_L1"] < 200


def test_fifty_steps_on_one_pair_drive_l1_down():
    # A higher rate than the paper's 2e-4: tiny widths move slowly, and 50 steps must suffice.
    model = tiny_model(lr=1e-3)
    a, b = image_pair(batch=1)
    history = [model.train_step(a, b)["G_L1"] for _ in range(50)]
    assert history[-1] < 0.5 * history[0]


def test_same_seed_gives_same_losses():
    a, b = image_pair(size=64)
    runs = []
    for _ in range(2):
        model = tiny_model(seed=123, num_downs=6)  # num_downs 6 has a dropout layer
        runs.append([model.train_step(a, b) for _ in range(3)])
    assert runs[0] == runs[1]
    other = tiny_model(seed=124, num_downs=6)
    assert other.train_step(a, b) != runs[0][0]


def test_discriminator_is_trainable_again_after_a_step():
    model = tiny_model()
    model.train_step(*image_pair())
    assert all(p.requires_grad for p in model.discriminator_module.parameters())


@pytest.mark.parametrize("option", [{"channels_last": True}, {"fused_adam": True}])
def test_performance_switches_do_not_change_the_algorithm(option):
    a, b = image_pair()
    base = {"channels_last": False, "fused_adam": False, "autocast": False}
    plain = tiny_model(seed=5, **base)
    fast = tiny_model(seed=5, **{**base, **option})
    for _ in range(3):
        expected, got = plain.train_step(a, b), fast.train_step(a, b)
        for name in LOSS_NAMES:
            assert got[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5)


def test_bf16_autocast_stays_close_to_fp32():
    a, b = image_pair()
    fp32 = tiny_model(seed=5, autocast=False)
    bf16 = tiny_model(seed=5, autocast=True)
    for _ in range(3):
        expected, got = fp32.train_step(a, b), bf16.train_step(a, b)
        for name in LOSS_NAMES:
            assert got[name] == pytest.approx(expected[name], rel=3e-2)
    assert got != expected  # it did run in bf16
    out32, out16 = fp32.translate(a), bf16.translate(a)
    assert (out16 - out32).abs().mean() < 1e-2


def test_auto_settings_on_cpu():
    model = tiny_model()
    assert model.fused_adam and not model.channels_last
    assert model.autocast == native_bf16("cpu")
    forced = tiny_model(channels_last=True)
    weight = forced.generator_module.model.model[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_lsgan_mode_trains():
    model = tiny_model(gan_mode="lsgan")
    losses = model.train_step(*image_pair())
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_translate_modes_and_side_effects():
    model = tiny_model(num_downs=6)
    a, _ = image_pair(size=64)
    net = model.generator_module
    before = [b.clone() for b in net.buffers()]

    out = model.translate(a)  # paper default: train-mode norm and dropout
    assert out.shape == a.shape and out.dtype == torch.float32 and out.abs().max() <= 1
    assert not torch.equal(model.translate(a), out)  # dropout is on
    assert net.training  # mode restored
    assert all(torch.equal(x, y) for x, y in zip(before, net.buffers(), strict=True))

    net.eval()
    first, second = model.translate(a, eval_mode=True), model.translate(a, eval_mode=True)
    assert torch.equal(first, second)
    assert not net.training


def test_inputs_are_checked():
    model = tiny_model()
    a, b = image_pair()
    with pytest.raises(ValueError, match="float NCHW"):
        model.train_step((a * 127).to(torch.uint8), b)
    with pytest.raises(ValueError, match="multiples of 32"):
        model.translate(torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match="must match"):
        model.train_step(a, b[:1])


def test_a_resnet_generator_trains_and_translates_at_multiples_of_4():
    model = Pix2Pix(
        GeneratorConfig(netG="resnet_6blocks", ngf=4),
        DiscriminatorConfig(netD="n_layers", n_layers=0, ndf=4),
        seed=0,
        init_type="xavier",
    )
    a, b = image_pair(size=36)
    losses = model.train_step(a, b)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert model.translate(a).shape == a.shape
    with pytest.raises(ValueError, match=r"resnet_6blocks .* multiples of 4"):
        model.translate(torch.zeros(1, 3, 34, 34))


def test_config_dict_round_trips_through_json():
    import json

    model = tiny_model(lambda_l1=10.0)
    config = json.loads(json.dumps(model.config_dict()))
    assert set(config) == {"generator", "discriminator", "training"}
    rebuilt = Pix2Pix.from_config_dict(config)
    assert rebuilt.config_dict() == model.config_dict()
    assert rebuilt.training_config.lambda_l1 == 10.0


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"lambda_l1": -1.0}, "-1.0"),
        ({"gan_mode": "wgan"}, "'wgan'"),
        ({"lr": 0}, "0"),
        ({"beta1": 1.5}, "1.5"),
        ({"epoch_count": 0}, "0"),
        ({"channels_last": "yes"}, "'yes'"),
        ({"compile": True, "compile_mode": "fast"}, "'fast'"),
        ({"compile_mode": "reduce-overhead"}, "set compile too"),
    ],
)
def test_bad_training_configs_name_the_bad_value(options, bad):
    with pytest.raises(ValueError, match=bad):
        TrainingConfig(**options)


def test_unknown_training_option_is_rejected():
    with pytest.raises(TypeError, match="lambda_L2"):
        Pix2Pix(GeneratorConfig(ngf=8, num_downs=5), DiscriminatorConfig(ndf=8), lambda_L2=1.0)


def test_discriminator_channels_must_fit_the_pair():
    with pytest.raises(ValueError, match="input_nc"):
        Pix2Pix(GeneratorConfig(ngf=8, num_downs=5, output_nc=1), DiscriminatorConfig(ndf=8))


def test_syncbatch_is_converted_by_parallelize():
    model = tiny_model(norm="syncbatch")
    ids = {id(p) for p in model.optimizer_G.param_groups[0]["params"]}
    model.parallelize(lambda module: module)
    sync = [m for m in model.generator_module.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert sync and not any(
        type(m) is torch.nn.BatchNorm2d for m in model.discriminator_module.modules()
    )
    # The optimizer still holds the very parameters the converted modules use.
    assert {id(p) for p in model.generator_module.parameters()} == ids
    model.train_step(*image_pair())  # without a process group it behaves as BatchNorm
