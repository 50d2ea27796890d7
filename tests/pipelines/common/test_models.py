"""`load_generator_from_uri`: checkpoints of this project, official state dicts, bad inputs.

(Registry URIs are covered with the registry, in test_registry.py.)
"""

import shutil

import pytest
import torch

from pipelines.common.errors import UserError
from pipelines.common.models import load_generator_from_uri
from tests.pipelines.registry.registry_data import CROP, GENERATOR, registry_data


@pytest.fixture(scope="module")
def data(ray_cluster, tmp_path_factory, photo_pairs):
    return registry_data(tmp_path_factory, photo_pairs)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_saved_generator_and_training_checkpoint_load_the_same_network(data):
    from_generator = load_generator_from_uri(str(data.trained))
    from_checkpoint = load_generator_from_uri(f"file://{data.training_checkpoint}")
    for loaded in (from_generator, from_checkpoint):
        assert loaded.config == GENERATOR
        assert loaded.crop_size == CROP
        assert loaded.eval_mode is False  # what the checkpoint says it was validated with
        assert _same_weights(loaded.module, data.model.generator_module)
    assert from_checkpoint.metadata["source"] == f"{data.training_checkpoint}"


def test_run_folder_gives_its_best_or_latest_epoch(data, tmp_path):
    run = tmp_path / "run"
    for epoch, model in ((1, data.untrained), (2, data.trained)):
        (run / f"epoch_{epoch:04d}").mkdir(parents=True)
        shutil.copy(model, run / f"epoch_{epoch:04d}" / "checkpoint.pt")
        (run / f"epoch_{epoch:04d}" / "checkpoint.json").write_text("{}")
    (run / "run.json").write_text('{"mlflow_run_id": "abc123"}')
    latest = load_generator_from_uri(str(run))
    assert _same_weights(latest.module, data.model.generator_module)
    assert latest.metadata["source"].endswith("epoch_0002/checkpoint.pt")
    assert latest.metadata["source_run_id"] == "abc123"  # from the run folder's run.json

    # A finished run names its best checkpoint in result.json.
    (run / "result.json").write_text(f'{{"best_checkpoint": "{run}/epoch_0001"}}')
    best = load_generator_from_uri(str(run))
    assert best.metadata["source"].endswith("epoch_0001/checkpoint.pt")
    assert not _same_weights(best.module, data.model.generator_module)


def test_checkpoint_on_object_storage(data, s3_store):
    loc = s3_store.location().join("model", "generator.pt")
    loc.write_bytes(data.trained.read_bytes())
    loaded = load_generator_from_uri(loc.url, storage_options=s3_store.options)
    assert _same_weights(loaded.module, data.model.generator_module)


def test_official_state_dict(data, tmp_path):
    # The official code saves the bare state dict, with a DataParallel prefix on GPU runs.
    state = {f"module.{k}": v for k, v in data.model.generator_module.state_dict().items()}
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    loaded = load_generator_from_uri(str(path), official=GENERATOR)
    assert loaded.eval_mode is False  # the official test runs in train mode unless --eval
    assert _same_weights(loaded.module, data.model.generator_module)

    # Without `official` the architecture is the official default (unet_256, ngf 64).
    # The message names the flags that fit the weights.
    with pytest.raises(UserError, match=r"latest_net_G\.pth: not an official generator") as no:
        load_generator_from_uri(str(path))
    assert f"the weights are of a U-Net --num_downs {GENERATOR.num_downs}" in str(no.value)


def test_bad_models_are_user_errors_naming_the_file(tmp_path):
    with pytest.raises(UserError, match="no model at"):
        load_generator_from_uri(str(tmp_path / "missing.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"garbage\.pt: not a pix2pix checkpoint"):
        load_generator_from_uri(str(garbage))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: expected one checkpoint file"):
        load_generator_from_uri(str(tmp_path / "empty"))
