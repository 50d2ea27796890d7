"""`pix2pix evaluate`: the training validation's metric code, on any model, on a split."""

import copy

import mlflow
import numpy as np
import pytest
import torch

from pipelines.cli import main
from pipelines.common.dataset import read_prepared, split_fingerprint
from pipelines.common.models import load_generator_from_uri, resolve_device
from pipelines.registry import evaluate
from pix2pix_core import GeneratorConfig, ImageMetrics, build_generator, to_tensor
from pix2pix_core.geometry import resample
from tests.pipelines.registry.registry_data import CROP, GENERATOR, registry_data


@pytest.fixture(scope="module")
def data(ray_cluster, tmp_path_factory, photo_pairs):
    return registry_data(tmp_path_factory, photo_pairs)


def test_metrics_are_the_core_metrics_on_pairs_resized_to_the_crop(data):
    loaded = load_generator_from_uri(str(data.trained))
    before = copy.deepcopy(loaded.module.state_dict())
    metrics = evaluate(loaded, data.dst, "val", batch_size=3)

    # By hand, as the official test: the source pairs (64 px, as stored) resampled once to
    # the model's 32 (PIL bicubic), one image at a time in train mode (the paper's test
    # time: batch-norm statistics of the image itself).
    rows = read_prepared(data.dst, "val").take_all()
    assert rows[0]["a"].shape == (64, 64, 3)
    expected = ImageMetrics()
    net = copy.deepcopy(data.model.generator_module).train()
    with torch.no_grad():
        for row in rows:
            a = to_tensor(resample(row["a"], CROP, CROP)[None])
            b = to_tensor(resample(row["b"], CROP, CROP)[None])
            expected.update(net(a).contiguous(), b)
    assert metrics == pytest.approx(expected.compute(), rel=1e-5)
    # Train-mode batch norm must not have touched the loaded running statistics.
    after = loaded.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_trained_beats_untrained_on_every_metric(data):
    trained = evaluate(load_generator_from_uri(str(data.trained)), data.dst, "test")
    untrained = evaluate(load_generator_from_uri(str(data.untrained)), data.dst, "test")
    assert trained["l1"] < untrained["l1"]
    assert trained["psnr"] > untrained["psnr"]
    assert trained["ssim"] > untrained["ssim"]


def test_eval_mode_changes_the_result_and_is_repeatable(data):
    loaded = load_generator_from_uri(str(data.trained))
    train_mode = evaluate(loaded, data.dst, "val", eval_mode=False)
    eval_mode = evaluate(loaded, data.dst, "val", eval_mode=True)
    assert train_mode != eval_mode  # running statistics vs each image's own
    assert evaluate(loaded, data.dst, "val", eval_mode=True) == eval_mode


def test_split_fingerprint_names_the_split(data):
    assert split_fingerprint(data.dst, "val") == split_fingerprint(data.dst, "val")
    assert split_fingerprint(data.dst, "val") != split_fingerprint(data.dst, "test")


def test_cli_checkpoint_and_official_state_dict(data, tmp_path, capsys, mlflow_uri):
    # An official unet_128 (ngf 8 to stay small), as the official code saves it.
    official = build_generator(GeneratorConfig(netG="unet_128", ngf=8))
    path = tmp_path / "facades_net_G.pth"
    torch.save(official.state_dict(), path)
    flags = ["--data", data.dst.url, "--split", "val", "--tracking_uri", mlflow_uri]
    assert main(["evaluate", "--model", str(path), "--netG", "unet_128", "--ngf", "8", *flags]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{path} on val (4 pairs, split {split_fingerprint(data.dst, 'val')})")
    assert "L1 " in line and "PSNR " in line and "SSIM " in line

    experiment = "test-evaluate-cli"
    assert main(["evaluate", "--model", str(data.trained), *flags, "--log",
                 "--experiment", experiment]) == 0  # fmt: skip
    expected = evaluate(load_generator_from_uri(str(data.trained)), data.dst, "val")
    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert runs[0].data.metrics["val_l1"] == pytest.approx(expected["l1"])
    assert runs[0].data.tags["pix2pix.split_fingerprint"] == split_fingerprint(data.dst, "val")


def test_cli_user_errors(data, capsys, tmp_path):
    assert main(["evaluate", "--model", str(data.trained), "--data", str(tmp_path)]) == 2
    assert "is not a prepared dataset" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "x.pt"), "--data", data.dst.url]) == 2
    assert "no model at" in capsys.readouterr().err
    args = ["evaluate", "--model", str(data.trained), "--data", data.dst.url, "--split", "nope"]
    assert main(args) == 2
    assert "no 'nope' split" in capsys.readouterr().err
    args = ["evaluate", "--model", str(data.trained), "--data", data.dst.url]
    assert main([*args, "--device", "gpu"]) == 2
    assert "--device 'gpu' is not a torch device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        assert "torch sees no CUDA GPU here" in capsys.readouterr().err


def test_device_auto_is_cuda_where_torch_sees_a_gpu():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


def test_resized_evaluation_compares_at_the_models_size(data):
    """A model whose crop is the prepared size runs on the pairs as they are."""
    loaded = load_generator_from_uri(str(data.trained))
    native = type(loaded)(loaded.module, GENERATOR, False, {**loaded.metadata, "crop_size": 64})
    assert native.crop_size == 64
    metrics = evaluate(native, data.dst, "val")
    assert metrics != evaluate(loaded, data.dst, "val")
    assert np.isfinite(list(metrics.values())).all()
    # What the 64 px model is given are the stored pixels, which are the source's
    # (tests/pipelines/prepare: held-out pairs keep their source size): no resample at all.
    from pipelines.common.dataset import iter_pairs
    from pix2pix_core.inference import translated_pairs

    pairs = list(iter_pairs(data.dst, "val"))
    generator = native.for_test()
    with torch.inference_mode():
        given = list(translated_pairs(generator, pairs, tile=64, batch_size=len(pairs)))
    for (real_a, _, real_b), (a, b) in zip(given, pairs, strict=True):
        assert torch.equal(real_a[0], to_tensor(a)) and torch.equal(real_b[0], to_tensor(b))
