import argparse

import pytest

from pipelines import cli
from pipelines.common.errors import UserError
from pipelines.config.options import CommonOptions, ModelOptions, add_options, load_options


def _parse(argv, *classes):
    parser = argparse.ArgumentParser()
    add_options(parser, *classes)
    args = parser.parse_args(argv)
    return load_options(args, *classes)


def test_defaults_are_the_papers():
    (model,) = _parse([], ModelOptions)
    assert model.netG == "unet_256"
    assert model.norm == "batch"
    assert model.patch_size == 70
    assert model.lambda_L1 == 100.0
    assert (model.lr, model.beta1) == (2e-4, 0.5)
    assert (model.n_epochs, model.n_epochs_decay) == (100, 100)
    assert model.gan_mode == "vanilla"
    g, d, t = model.generator_config(), model.discriminator_config(), model.training_config()
    assert g.use_dropout and d.input_nc == 6 and t.lambda_l1 == 100.0


def test_flags_override_yaml(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lambda_L1: 10\nnetG: unet_128\nlr: 2e-4\nstorage_path: s3://bucket/runs\n")
    model, common = _parse(["--config", str(cfg), "--lambda_L1", "50"], ModelOptions, CommonOptions)
    assert model.lambda_L1 == 50.0
    assert model.netG == "unet_128"
    assert model.lr == 2e-4  # YAML reads 2e-4 as a string; it is coerced
    assert common.storage_path == "s3://bucket/runs"


@pytest.mark.parametrize(
    ("argv", "autocast"),
    [([], None), (["--autocast"], True), (["--no_autocast"], False), (["--no-autocast"], False)],
)
def test_an_on_off_option_is_negated_as_the_official_code_spells_it(argv, autocast):
    (model,) = _parse(argv, ModelOptions)
    assert model.autocast is autocast


def test_help_lists_the_official_negation_only(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    helps = {}
    for verb in ("train", "translate", "evaluate"):
        with pytest.raises(SystemExit):
            cli.main([verb, "--help"])
        helps[verb] = capsys.readouterr().out
        assert "--no-" not in helps[verb], verb
    assert "  --channels_last, --no_channels_last" in helps["train"]
    assert "  --eval, --no_eval" in helps["translate"]
    assert "  --eval, --no_eval" in helps["evaluate"]


def test_unknown_yaml_key_is_named_with_a_suggestion(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lambda_l1: 10\n")
    expected = r"unknown option 'lambda_l1' \(did you mean 'lambda_L1'\?\)"
    with pytest.raises(UserError, match=expected):
        _parse(["--config", str(cfg)], ModelOptions)


def test_bad_value_names_the_option(tmp_path):
    with pytest.raises(UserError, match=r"--lambda_L1: expected a number, got 'lots'"):
        _parse(["--lambda_L1", "lots"], ModelOptions)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ngf: [1, 2]\n")
    with pytest.raises(UserError, match=r"ngf: expected an integer"):
        _parse(["--config", str(cfg)], ModelOptions)


def test_bad_model_value_is_reported_by_the_core_config():
    (model,) = _parse(["--norm", "group"], ModelOptions)
    with pytest.raises(UserError, match="group"):
        model.validate()
    (model,) = _parse(["--patch_size", "33"], ModelOptions)
    with pytest.raises(UserError, match="33"):
        model.validate()
    (model,) = _parse(["--compile_mode", "reduce-overhead"], ModelOptions)
    with pytest.raises(UserError, match=r"set compile too \(--compile\), got 'reduce-overhead'$"):
        model.validate()


def test_yaml_must_be_a_mapping(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="expected a mapping"):
        _parse(["--config", str(cfg)], ModelOptions)
    with pytest.raises(UserError, match="not found"):
        _parse(["--config", str(tmp_path / "missing.yaml")], ModelOptions)


def test_storage_options_flag_is_json():
    (common,) = _parse(["--storage_options", '{"anon": true}'], CommonOptions)
    assert common.storage_options == {"anon": True}
    with pytest.raises(UserError, match="storage_options"):
        _parse(["--storage_options", "{nope"], CommonOptions)


def test_cli_help_lists_every_verb(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("prepare", "train", "tune", "evaluate", "register", "promote", "translate"):
        assert verb in out
    assert "retrain" in out and "demo" in out


def test_cli_unknown_verb_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["trian"])
    assert exc.value.code == 2
    assert "unknown verb 'trian'; did you mean 'train'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["xyz"])
    assert "unknown verb 'xyz'; choose one of: prepare, train," in capsys.readouterr().err


def test_cli_version_is_the_installed_distributions(capsys):
    from importlib import metadata

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"pix2pix {metadata.version('pix2pix')}\n"


@pytest.mark.parametrize("verb", list(cli.VERBS))
def test_verb_help_states_each_default_once_and_marks_required_flags(verb, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per flag
    with pytest.raises(SystemExit) as exc:
        cli.main([verb, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "(default: None)" not in out
    for line in out.splitlines():
        assert line.count("default:") + line.count("unset:") <= 1, line
    assert ".:\n" not in out  # group titles
    required = {
        "train": ["--data"],
        "tune": ["--data"],
        "evaluate": ["--model", "--data"],
        "register": ["--name"],
        "promote": ["--name", "--candidate", "--data"],
        "translate": ["--model", "--input", "--output"],
        "retrain": ["--source"],
    }.get(verb, [])
    flagged = {line.split()[0] for line in out.splitlines() if line.endswith("(required)")}
    assert flagged == set(required)


def test_retrain_has_no_data_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["retrain", "--source", "x", "--data", "y"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --data y" in capsys.readouterr().err
