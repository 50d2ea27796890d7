import argparse

import pytest

from pipelines import cli
from pipelines.common.errors import UserError
from pipelines.config.groups import CommonOptions, PerformanceOptions
from pipelines.config.loader import add_options, load_options
from pipelines.train.options import TrainConfig


def _parse(argv, *classes):
    parser = argparse.ArgumentParser()
    add_options(parser, *classes)
    args = parser.parse_args(argv)
    return load_options(args, *classes)


def _model(argv) -> TrainConfig:
    return TrainConfig.of(_parse(argv, *TrainConfig.GROUPS))


def test_defaults_are_the_papers():
    cfg = _model([])
    assert cfg.architecture.netG == "unet_256"
    assert cfg.architecture.norm == "batch"
    assert cfg.discriminator.patch_size == 70
    assert cfg.optimisation.lambda_L1 == 100.0
    assert (cfg.optimisation.lr, cfg.optimisation.beta1) == (2e-4, 0.5)
    assert (cfg.optimisation.n_epochs, cfg.optimisation.n_epochs_decay) == (100, 100)
    assert cfg.optimisation.gan_mode == "vanilla"
    assert (cfg.train.batch_size, cfg.train.crop_size) == (1, 256)
    g, d, t = cfg.generator_config(), cfg.discriminator_config(), cfg.training_config()
    assert g.use_dropout and d.input_nc == 6 and t.lambda_l1 == 100.0


def test_flags_override_yaml(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lambda_L1: 10\nnetG: unet_128\nlr: 2e-4\nstorage_path: s3://bucket/runs\n")
    *groups, common = _parse(
        ["--config", str(cfg), "--lambda_L1", "50"], *TrainConfig.GROUPS, CommonOptions
    )
    model = TrainConfig.of(tuple(groups))
    assert model.optimisation.lambda_L1 == 50.0
    assert model.architecture.netG == "unet_128"
    assert model.optimisation.lr == 2e-4  # YAML reads 2e-4 as a string; it is coerced
    assert common.storage_path == "s3://bucket/runs"


@pytest.mark.parametrize(
    ("argv", "autocast"),
    [([], None), (["--autocast"], True), (["--no_autocast"], False), (["--no-autocast"], False)],
)
def test_an_on_off_option_is_negated_as_the_official_code_spells_it(argv, autocast):
    (performance,) = _parse(argv, PerformanceOptions)
    assert performance.autocast is autocast


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
        _model(["--config", str(cfg)])


def test_bad_value_names_the_option(tmp_path):
    with pytest.raises(UserError, match=r"--lambda_L1: expected a number, got 'lots'"):
        _model(["--lambda_L1", "lots"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ngf: [1, 2]\n")
    with pytest.raises(UserError, match=r"ngf: expected an integer"):
        _model(["--config", str(cfg)])


def test_bad_model_value_is_reported_by_the_core_config():
    with pytest.raises(UserError, match="group"):
        _model(["--norm", "group"]).validate()
    with pytest.raises(UserError, match="33"):
        _model(["--patch_size", "33"]).validate()
    reduce = _model(["--compile_mode", "reduce-overhead"])
    with pytest.raises(UserError, match=r"set compile too \(--compile\), got 'reduce-overhead'$"):
        reduce.validate()
    with pytest.raises(UserError, match=r"set compile too"):
        reduce.performance.validate()


def test_yaml_must_be_a_mapping(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="expected a mapping"):
        _model(["--config", str(cfg)])
    with pytest.raises(UserError, match="not found"):
        _model(["--config", str(tmp_path / "missing.yaml")])


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


def test_each_verb_shows_the_groups_it_uses_and_translate_no_training_flag():
    from pipelines.config.fields import names
    from pipelines.config.groups import DiscriminatorOptions, OptimisationOptions
    from pipelines.train import TrainOptions
    from pipelines.translate import TranslateOptions

    def dests(verb: str) -> set[str]:
        return {a.dest for a in cli.verb_parser(verb)[1]._actions}

    translate = dests("translate")
    training = names(DiscriminatorOptions, OptimisationOptions, TrainOptions)
    assert not translate & (set(training) - set(names(TranslateOptions)))
    assert not translate & {"storage_path", "run_name", "experiment"}
    # An official *_net_G.pth is read through the architecture group, the same for all.
    for verb in ("translate", "evaluate", "register"):
        assert {"netG", "num_downs", "ngf", "norm", "no_dropout", "input_nc"} <= dests(verb)
    assert {"lambda_L1", "ndf", "crop_size", "storage_path", "compile_mode"} <= dests("train")


def test_what_a_run_learns_is_the_options_marked_so():
    cfg = TrainConfig()
    learned = cfg.learned()
    for what in ("lambda_L1", "netG", "patch_size", "n_epochs", "crop_size", "batch_size", "seed"):
        assert what in learned, what
    for how in ("compile", "compile_mode", "autocast", "channels_last", "keep_best", "data"):
        assert how not in learned, how
    same = cfg.replace(compile=True, compile_mode="max-autotune", keep_best=5, num_val=2)
    assert same.learned() == learned
    assert cfg.replace(lambda_L1=10.0).learned() != learned


def test_the_official_model_flags_reach_the_core_configs():
    cfg = _model(
        [
            "--netG",
            "resnet_9blocks",
            "--netD",
            "n_layers",
            "--n_layers_D",
            "0",
            "--gan_mode",
            "wgangp",
            "--lambda_gp",
            "10",
            "--init_type",
            "xavier",
            "--init_gain",
            "0.05",
            "--lr_policy",
            "step",
            "--lr_decay_iters",
            "20",
        ]
    )
    g, d, t = cfg.generator_config(), cfg.discriminator_config(), cfg.training_config()
    assert (g.netG, g.multiple) == ("resnet_9blocks", 4)
    assert (d.kind, d.layers, d.receptive_field) == ("n_layers", 0, 16)
    assert (t.gan_mode, t.lambda_gp, t.init_type, t.init_gain) == ("wgangp", 10.0, "xavier", 0.05)
    assert (t.lr_policy, t.lr_decay_iters) == ("step", 20)


def test_the_new_model_flags_default_to_the_papers_settings():
    cfg = _model([])
    d, t = cfg.discriminator_config(), cfg.training_config()
    assert cfg.discriminator.netD is None and (d.kind, d.receptive_field) == ("basic", 70)
    assert (t.init_type, t.init_gain, t.lr_policy, t.lambda_gp) == ("normal", 0.02, "linear", 0.0)
    assert _model(["--patch_size", "1"]).discriminator_config().kind == "pixel"


@pytest.mark.parametrize(
    ("argv", "quoted"),
    [
        (["--netD", "pixel", "--patch_size", "286"], "patch_size 286 contradicts netD 'pixel'"),
        (["--netD", "basic", "--n_layers_D", "5"], "netD 'basic' with n_layers 5"),
        (["--netG", "resnet_12blocks"], "'resnet_12blocks'"),
        (["--netD", "multiscale"], "'multiscale'"),
        (["--gan_mode", "hinge"], "'hinge'"),
        (["--lambda_gp", "10"], "needs gan_mode 'wgangp', not 'vanilla'"),
        (["--init_type", "uniform"], "'uniform'"),
        (["--lr_policy", "exponential"], "'exponential'"),
        (["--netG", "resnet_6blocks", "--num_downs", "6"], "num_downs 6"),
    ],
)
def test_bad_combinations_of_model_flags_are_user_errors_quoting_the_values(argv, quoted):
    with pytest.raises(UserError) as refused:
        _model(argv).validate()
    assert quoted in str(refused.value)


def test_the_new_model_options_change_what_a_run_learns():
    learned = TrainConfig().learned()
    for what in ("netD", "lambda_gp", "lr_policy", "lr_decay_iters", "init_type", "init_gain"):
        assert what in learned, what
    assert TrainConfig().replace(netG="resnet_9blocks").learned() != learned
