"""The sweep's search space: YAML -> Ray Tune domains, and the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray import tune

from pipelines.common.errors import UserError
from pipelines.train import TrainConfig
from pipelines.tune.space import PAPER_SEARCH_SPACE, parse_search_space

EXAMPLE = Path(__file__).parents[3] / "infra" / "search_space.example.yaml"
BASE = TrainConfig()


def parse(values, **kwargs):
    return parse_search_space(values, BASE, source="space.yaml", **kwargs)


def test_the_example_file_is_the_papers_space():
    assert yaml.safe_load(EXAMPLE.read_text()) == PAPER_SEARCH_SPACE


def test_the_papers_space_becomes_tune_domains():
    space = parse(PAPER_SEARCH_SPACE)
    domains = space.param_space()

    l1 = domains["lambda_L1"]
    assert isinstance(l1, tune.search.sample.Float)
    assert (l1.lower, l1.upper) == (1.0, 1000.0)
    assert isinstance(l1.get_sampler(), tune.search.sample.LogUniform)
    assert domains["patch_size"].categories == [1, 16, 70, 286]
    assert domains["norm"].categories == ["batch", "instance"]
    samples = [domains["lambda_L1"].sample() for _ in range(200)]
    assert all(1 <= s <= 1000 for s in samples)
    assert space.to_yaml() == PAPER_SEARCH_SPACE


def test_plain_values_fix_an_option_for_every_trial_and_are_coerced():
    space = parse({"n_epochs": "3", "lr": {"loguniform": ["1e-5", 1.0e-3]}})
    assert space.fixed == {"n_epochs": 3}
    assert space.names == ["lr"]
    assert set(space.param_space()) == {"lr"}
    # YAML 1.1 reads 1e-5 (no dot) as a string; it still means the number.
    assert space.params[0].args == (1e-5, 1e-3)


def test_integer_options_take_integer_distributions():
    space = parse({"ngf": {"lograndint": [8, 129]}, "n_epochs": {"randint": [1, 4]}})
    assert {p.name: p.args for p in space.params} == {"ngf": (8, 129), "n_epochs": (1, 4)}
    assert isinstance(space.param_space()["ngf"], tune.search.sample.Integer)


def test_grid_is_recorded_so_search_algorithms_can_refuse_it():
    assert parse({"norm": {"grid": ["batch", "instance"]}}).has_grid
    assert not parse(PAPER_SEARCH_SPACE).has_grid


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"lambda_l1": {"choice": [1, 10]}},
            "'lambda_l1' is not an option that can be searched (did you mean 'lambda_L1'?)",
        ),
        (
            {"lambda_L1": {"log_uniform": [1, 10]}},
            "unknown distribution 'log_uniform' (did you mean 'loguniform'?)",
        ),
        (
            {"lambda_L1": {"loguniform": [0, 10]}},
            "lambda_L1: loguniform needs 0 < low, got [0, 10]",
        ),
        ({"lambda_L1": {"uniform": [10, 1]}}, "lambda_L1: uniform needs low < high"),
        ({"lambda_L1": {"uniform": [1]}}, "lambda_L1: uniform takes [low, high], got [1]"),
        ({"lambda_L1": {"uniform": ["a", 2]}}, "uniform takes [low, high]"),
        ({"lambda_L1": {"randint": [1, 10]}}, "randint does not fit a float option"),
        (
            {"ngf": {"uniform": [8, 64]}},
            "uniform does not fit a int option; use one of choice, grid, randint",
        ),
        ({"ngf": {"randint": [8, 64.5]}}, "ngf: randint takes integers"),
        ({"norm": {"choice": []}}, "norm: choice takes a non-empty list of values"),
        ({"norm": {"choice": ["batch", "batch"]}}, "norm: choice lists a value twice"),
        ({"norm": {"choice": ["batch", "group"]}}, "group"),
        ({"patch_size": {"choice": [70, 33]}}, "33"),
        ({"ngf": {"choice": [8, "wide"]}}, "ngf: expected an integer, got 'wide'"),
        ({"lambda_L1": [1, 10]}, "a plain list is ambiguous; write {choice: [1, 10]}"),
        ({"lambda_L1": {"choice": [1], "uniform": [1, 2]}}, "expected one distribution"),
        ({"lambda_L1": 5.0}, "nothing to search"),
        ({}, "the search space is empty"),
        (["lambda_L1"], "expected a mapping of option: distribution, got list"),
    ],
)
def test_bad_spaces_name_the_file_the_key_and_the_problem(values, message):
    with pytest.raises(UserError) as err:
        parse(values)
    assert str(err.value).startswith("space.yaml: ")
    assert message in str(err.value)


def test_excluded_options_say_why():
    with pytest.raises(UserError, match="'ngf' cannot be searched: because"):
        parse({"ngf": {"choice": [8, 16]}}, exclude={"ngf": "because"})


def test_what_a_sweep_may_search_follows_the_learns_mark():
    from pipelines.tune.options import not_searchable

    reasons = not_searchable()
    for how in ("compile_mode", "autocast", "keep_best", "max_failures", "use_gpu"):
        assert "how a trial runs, not what it learns" in reasons[how], how
    assert "--num_workers" in reasons["num_workers"] and "--data" in reasons["data"]
    for what in ("lambda_L1", "patch_size", "norm", "ngf", "crop_size", "n_epochs", "seed"):
        assert what not in reasons, what
    with pytest.raises(UserError, match="'compile_mode' cannot be searched: it changes how"):
        parse({"compile_mode": {"choice": ["default", "max-autotune"]}}, exclude=reasons)


def test_the_official_architecture_and_schedule_options_can_be_searched():
    space = parse(
        {
            "netG": {"choice": ["unet_256", "resnet_9blocks"]},
            "netD": {"choice": ["basic", "pixel"]},
            "gan_mode": {"choice": ["vanilla", "lsgan"]},
            "init_type": {"choice": ["normal", "kaiming"]},
            "lr_policy": {"choice": ["linear", "cosine"]},
            "init_gain": {"loguniform": [0.005, 0.05]},
        }
    )
    domains = space.param_space()
    assert domains["netG"].categories == ["unet_256", "resnet_9blocks"]
    assert domains["netD"].categories == ["basic", "pixel"]
    assert isinstance(domains["init_gain"], tune.search.sample.Float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"netG": {"choice": ["unet_256", "resnet_12blocks"]}}, "netG: unknown netG 'resnet_12"),
        ({"netD": {"choice": ["basic", "multiscale"]}}, "netD: unknown netD 'multiscale'"),
        ({"init_type": {"choice": ["normal", "uniform"]}}, "init_type: init_type must be one of"),
        ({"lr_policy": {"choice": ["linear", "exp"]}}, "lr_policy must be one of linear, step"),
        ({"lambda_gp": {"uniform": [1, 10]}}, "needs gan_mode 'wgangp'"),
    ],
)
def test_invalid_values_of_the_official_options_are_refused_with_a_message(values, message):
    with pytest.raises(UserError) as refused:
        parse(values)
    assert str(refused.value).startswith("space.yaml: ")
    assert message in str(refused.value)
