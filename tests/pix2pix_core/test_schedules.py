"""--lr_policy linear | step | plateau | cosine, stepped in the official train.py's order."""

import warnings

import pytest
import torch

from pix2pix_core import TrainingConfig, load_checkpoint, save_checkpoint

from .helpers import tiny_model
from .official_like import official_lrs


def rates_per_epoch(model, metric=None) -> list[float]:
    """What this project's loop must do: step_schedulers() at the start of every epoch."""
    cfg = model.training_config
    rates = []
    for _ in range(cfg.epoch_count, cfg.n_epochs + cfg.n_epochs_decay + 1):
        model.step_schedulers(metric=metric)
        assert model.optimizer_D.param_groups[0]["lr"] == model.current_lr
        rates.append(model.current_lr)
    return rates


@pytest.mark.parametrize(
    ("n_epochs", "n_epochs_decay", "epoch_count"), [(3, 4, 1), (3, 4, 2), (5, 0, 1), (0, 3, 1)]
)
def test_linear_rate_of_each_epoch_is_the_officials(n_epochs, n_epochs_decay, epoch_count):
    schedule = {"n_epochs": n_epochs, "n_epochs_decay": n_epochs_decay}
    model = tiny_model(lr=1e-3, epoch_count=epoch_count, **schedule)
    ours = rates_per_epoch(model)
    assert ours == pytest.approx(
        official_lrs("linear", lr=1e-3, epoch_count=epoch_count, **schedule)
    )
    if n_epochs_decay:
        assert ours[-1] == 0.0  # the official trains its last epoch at rate 0


def test_the_papers_schedule_decays_from_epoch_100_to_zero_at_200():
    ours = rates_per_epoch(tiny_model())
    assert len(ours) == 200
    assert ours[:99] == [2e-4] * 99 and ours[99] == pytest.approx(2e-4 * 100 / 101)
    assert ours[-1] == 0.0


@pytest.mark.parametrize(
    ("policy", "options"),
    [
        ("step", {"lr_decay_iters": 3}),
        ("step", {}),  # the official default of 50 epochs
        ("cosine", {}),
        ("plateau", {}),
    ],
)
def test_other_policies_rate_of_each_epoch_is_the_officials(policy, options):
    schedule = {"n_epochs": 7, "n_epochs_decay": 60}
    model = tiny_model(lr=1e-3, lr_policy=policy, **schedule, **options)
    # plateau: pix2pix's metric is BaseModel's 0, never updated; metric=0.0 is that.
    ours = rates_per_epoch(model, metric=0.0)
    assert ours == pytest.approx(official_lrs(policy, lr=1e-3, **schedule, **options))
    assert len(set(ours)) > 1  # the schedule did move


def test_plateau_watches_the_metric_given_and_stays_without_one():
    model = tiny_model(lr=1e-3, lr_policy="plateau")
    model.step_schedulers()  # the first epoch: nothing measured yet
    assert model.current_lr == 1e-3
    for value in [1.0, 0.5, 0.25]:  # improving: the rate stays
        model.step_schedulers(metric=value)
    assert model.current_lr == 1e-3
    for _ in range(6):  # six epochs without a 1% gain: x0.2 (patience 5)
        model.step_schedulers(metric=0.25)
    assert model.current_lr == pytest.approx(2e-4)


def test_stepping_before_the_first_optimizer_step_does_not_warn():
    model = tiny_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.step_schedulers()


@pytest.mark.parametrize("policy", ["linear", "step", "plateau", "cosine"])
def test_a_resumed_run_continues_the_schedule(policy):
    model = tiny_model(lr=1e-3, lr_policy=policy, n_epochs=4, n_epochs_decay=6, lr_decay_iters=2)
    for _ in range(3):
        model.step_schedulers(metric=1.0)
    restored, _ = load_checkpoint(save_checkpoint(model))
    assert restored.current_lr == model.current_lr
    for _ in range(5):
        model.step_schedulers(metric=1.0)
        restored.step_schedulers(metric=1.0)
        assert restored.current_lr == model.current_lr


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"lr_policy": "exponential"}, "'exponential'"),
        ({"lr_decay_iters": 0}, "lr_decay_iters must be an int >= 1, got 0"),
        ({"lr_policy": "cosine", "n_epochs": 0}, "anneals over n_epochs"),
        ({"init_type": "uniform"}, "'uniform'"),
    ],
)
def test_bad_schedules_and_inits_name_the_value(options, bad):
    with pytest.raises(ValueError, match=bad):
        TrainingConfig(**options)


def test_defaults_are_the_papers():
    cfg = TrainingConfig()
    assert (cfg.lr_policy, cfg.init_type, cfg.init_gain, cfg.gan_mode) == (
        "linear",
        "normal",
        0.02,
        "vanilla",
    )
    assert cfg.lambda_gp == 0.0 and cfg.lr_decay_iters == 50
    assert isinstance(tiny_model().scheduler_G, torch.optim.lr_scheduler.LambdaLR)
