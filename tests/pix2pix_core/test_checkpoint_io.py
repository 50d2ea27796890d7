"""Checkpoints: full round trip, generator-only export, official state dicts."""

import io
import json

import pytest
import torch

from pix2pix_core import (
    GeneratorConfig,
    build_generator,
    load_checkpoint,
    load_generator,
    load_official_generator,
    save_checkpoint,
    save_generator,
)
from pix2pix_core.checkpoint import official_generator_flags, official_unet_flags

from .helpers import image_pair, tiny_model


def test_checkpoint_round_trip_resumes_exactly():
    model = tiny_model(seed=3, lambda_l1=50.0)
    a, b = image_pair()
    model.train_step(a, b)
    model.step_schedulers()
    data = save_checkpoint(model, {"epoch": 1, "step": 1, "dataset": "abc123"})
    assert isinstance(data, bytes)

    restored, extra = load_checkpoint(data)
    assert extra == {"epoch": 1, "step": 1, "dataset": "abc123"}
    assert restored.config_dict() == model.config_dict()
    assert restored.current_lr == model.current_lr
    assert restored.scheduler_G.last_epoch == model.scheduler_G.last_epoch == 1
    assert torch.equal(model.translate(a, eval_mode=True), restored.translate(a, eval_mode=True))

    # Optimizer moments and BatchNorm statistics came back: the next step is identical.
    torch.manual_seed(7)
    expected = model.train_step(a, b)
    torch.manual_seed(7)
    assert restored.train_step(a, b) == expected


def test_checkpoint_is_plain_tensors_and_json():
    data = save_checkpoint(tiny_model())
    payload = torch.load(io.BytesIO(data), weights_only=True)
    config = json.loads(payload["config"])
    assert config["generator"]["num_downs"] == 5 and config["training"]["gan_mode"] == "vanilla"
    assert {"netG", "netD", "optimizer_G", "optimizer_D", "scheduler_G", "scheduler_D"} <= set(
        payload
    )


def test_checkpoint_loads_from_a_file_object():
    model = tiny_model()
    restored, extra = load_checkpoint(io.BytesIO(save_checkpoint(model)))
    assert extra == {}
    assert restored.config_dict() == model.config_dict()


def test_extra_must_be_json():
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tiny_model(), {"when": object()})


def test_generator_rebuilds_from_its_bytes_alone():
    # Default layout and fp32 on both sides, so outputs can be compared bit for bit.
    model = tiny_model(channels_last=False, autocast=False)
    model.train_step(*image_pair())
    a, _ = image_pair()
    expected = model.translate(a, eval_mode=True)

    data = save_generator(model.generator_module, model.generator_config, {"run": "r1"})
    net, cfg, extra = load_generator(data)
    assert cfg == model.generator_config and extra == {"run": "r1"}
    with torch.inference_mode():
        assert torch.equal(net.eval()(a), expected)

    # A full training checkpoint serves as well.
    net2, cfg2, _ = load_generator(save_checkpoint(model, {"epoch": 3}))
    assert cfg2 == cfg
    with torch.inference_mode():
        assert torch.equal(net2.eval()(a), expected)


def test_wrong_kind_of_bytes_is_refused():
    data = save_generator(build_generator(GeneratorConfig(ngf=4, num_downs=5)), GeneratorConfig())
    with pytest.raises(ValueError, match=r"pix2pix\.training_checkpoint"):
        load_checkpoint(data)


def test_official_state_dict_with_module_prefix_and_old_buffers():
    cfg = GeneratorConfig(ngf=8, num_downs=5)
    source = build_generator(cfg)
    torch.nn.init.normal_(source.model.model[0].weight)
    # As written by DataParallel under PyTorch 0.4.0: "module." keys, no num_batches_tracked.
    official = {
        f"module.{key}": value
        for key, value in source.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    buffer = io.BytesIO()
    torch.save(official, buffer)
    net = load_official_generator(buffer.getvalue(), cfg)
    for key, value in source.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


def test_official_instance_norm_state_dict_with_stale_running_stats():
    cfg = GeneratorConfig(ngf=8, num_downs=5, norm="instance")
    state = build_generator(cfg).state_dict()
    # PyTorch 0.4.0 wrote running stats for InstanceNorm; the official loader drops them.
    state["model.model.1.model.2.running_mean"] = torch.zeros(16)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    load_official_generator(buffer.getvalue(), cfg)


def test_official_state_dict_for_another_network_is_refused_naming_the_flags_that_fit():
    buffer = io.BytesIO()
    torch.save(build_generator(GeneratorConfig(ngf=8, num_downs=5)).state_dict(), buffer)
    with pytest.raises(ValueError) as refused:
        load_official_generator(buffer.getvalue(), GeneratorConfig(ngf=16, num_downs=5))
    message = str(refused.value)
    assert "U-Net --num_downs 5 --ngf 8 --norm batch --input_nc 3 --output_nc 3" in message
    assert "size mismatch" not in message  # not torch's list of every tensor


@pytest.mark.parametrize(
    "cfg, flags",
    [
        (GeneratorConfig(), {"netG": "unet_256", "ngf": 64, "norm": "batch"}),
        (GeneratorConfig(netG="unet_128", ngf=32, norm="instance"), {"netG": "unet_128"}),
        (GeneratorConfig(ngf=8, num_downs=5, norm="none", input_nc=1), {"num_downs": 5}),
    ],
)
def test_official_unet_flags_are_read_from_the_weights(cfg, flags):
    found = official_unet_flags(build_generator(cfg).state_dict())
    assert found.items() >= flags.items()
    expected = {"ngf": cfg.ngf, "norm": cfg.norm, "input_nc": cfg.input_nc}
    assert found.items() >= (expected | {"output_nc": cfg.output_nc}).items()


def test_a_state_dict_of_no_unet_is_refused_with_the_first_lines_of_the_mismatch():
    buffer = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(8, 3, 3, 3)}, buffer)
    assert official_unet_flags({"conv.weight": torch.zeros(8, 3, 3, 3)}) == {}
    with pytest.raises(ValueError, match="does not fit a generator built from") as refused:
        load_official_generator(buffer.getvalue(), GeneratorConfig(ngf=8, num_downs=5))
    assert len(str(refused.value).splitlines()) <= 3


def _bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_official_state_dict_without_batch_norm_statistics_is_refused_naming_them():
    # The official strict load refuses it; nothing is filled in from a fresh network.
    cfg = GeneratorConfig(ngf=8, num_downs=5)
    state = build_generator(cfg).state_dict()
    del state["model.model.1.model.2.running_mean"], state["model.model.1.model.2.running_var"]
    with pytest.raises(ValueError) as refused:
        load_official_generator(_bytes(state), cfg)
    message = str(refused.value)
    assert "missing 2 key(s): model.model.1.model.2.running_mean, model.model.1.model.2" in message
    assert "official strict load refuses it too" in message


def test_official_state_dict_with_an_extra_tensor_is_refused_naming_it():
    cfg = GeneratorConfig(ngf=8, num_downs=5)
    state = {**build_generator(cfg).state_dict(), "model.model.7.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected 1 key\(s\): model\.model\.7\.weight"):
        load_official_generator(_bytes(state), cfg)


def test_official_instance_norm_counters_are_dropped_as_the_official_patch_does():
    cfg = GeneratorConfig(netG="resnet_6blocks", ngf=4, norm="instance")
    source = build_generator(cfg)
    state = source.state_dict()
    # What PyTorch 0.4.x wrote for InstanceNorm2d: stats and a counter it no longer keeps.
    for key in ("model.2", "model.10.conv_block.2"):
        state[f"{key}.running_mean"] = torch.zeros(4 if key == "model.2" else 16)
        state[f"{key}.num_batches_tracked"] = torch.tensor(3)
    net = load_official_generator(_bytes(state), cfg)
    for key, value in source.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


@pytest.mark.parametrize(
    "cfg",
    [
        GeneratorConfig(netG="resnet_9blocks", ngf=4),
        GeneratorConfig(netG="resnet_9blocks", ngf=4, use_dropout=False),
        GeneratorConfig(netG="resnet_6blocks", ngf=4, norm="instance", use_dropout=False),
        GeneratorConfig(netG="resnet_6blocks", ngf=4, norm="none", input_nc=1, output_nc=2),
    ],
)
def test_official_resnet_loads_and_its_flags_are_read_from_the_weights(cfg):
    source = build_generator(cfg)
    torch.nn.init.normal_(source.model[1].weight)
    flags = official_generator_flags(source.state_dict())
    expected = {"netG": cfg.netG, "ngf": 4, "norm": cfg.norm, "input_nc": cfg.input_nc}
    assert flags.items() >= (expected | {"output_nc": cfg.output_nc}).items()
    assert flags.get("no_dropout", False) is not cfg.use_dropout
    net = load_official_generator(_bytes(source.state_dict()), cfg)
    assert torch.equal(net.state_dict()["model.1.weight"], source.model[1].weight)


def test_official_resnet_for_other_flags_is_refused_naming_the_flags_that_fit():
    weights = build_generator(GeneratorConfig(netG="resnet_6blocks", ngf=4, use_dropout=False))
    wanted = GeneratorConfig(netG="resnet_6blocks", ngf=4)  # with dropout: other slots
    with pytest.raises(ValueError) as refused:
        load_official_generator(_bytes(weights.state_dict()), wanted)
    expected = "ResNet --netG resnet_6blocks --ngf 4 --norm batch --input_nc 3 --output_nc 3"
    assert f"{expected} --no_dropout, not of" in str(refused.value)
    with pytest.raises(ValueError, match="the weights are of a U-Net --num_downs 5"):
        unet = build_generator(GeneratorConfig(ngf=4, num_downs=5))
        load_official_generator(_bytes(unet.state_dict()), wanted)
