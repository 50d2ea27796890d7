"""One train_step against the official optimize_parameters, for each --gan_mode; the
WGAN-GP penalty against cal_gradient_penalty's formula."""

import copy

import pytest
import torch

from pix2pix_core import (
    DiscriminatorConfig,
    GANLoss,
    GeneratorConfig,
    Pix2Pix,
    TrainingConfig,
    gradient_penalty,
)

from .helpers import image_pair
from .official_like import gan_loss, gradient_penalty_like

PLAIN = {"channels_last": False, "autocast": False, "fused_adam": False}


def official_step(net_g, net_d, real_a, real_b, *, gan_mode, lambda_gp=0.0, lambda_l1=100.0):
    """Pix2PixModel.optimize_parameters, with cal_gradient_penalty added to loss_D when
    lambda_gp > 0 (the official pix2pix adds none)."""
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    fake_b = net_g(real_a)
    for p in net_d.parameters():
        p.requires_grad = True
    opt_d.zero_grad()
    fake_ab = torch.cat((real_a, fake_b), 1)
    loss_d_fake = gan_loss(gan_mode, net_d(fake_ab.detach()), False)
    real_ab = torch.cat((real_a, real_b), 1)
    loss_d_real = gan_loss(gan_mode, net_d(real_ab), True)
    loss_d = (loss_d_fake + loss_d_real) * 0.5
    if lambda_gp > 0:
        loss_d = loss_d + gradient_penalty_like(net_d, real_ab, fake_ab.detach(), lambda_gp)
    loss_d.backward()
    opt_d.step()
    for p in net_d.parameters():
        p.requires_grad = False
    opt_g.zero_grad()
    loss_g_gan = gan_loss(gan_mode, net_d(torch.cat((real_a, fake_b), 1)), True)
    loss_g_l1 = torch.nn.L1Loss()(fake_b, real_b) * lambda_l1
    (loss_g_gan + loss_g_l1).backward()
    opt_g.step()
    return {"G_GAN": loss_g_gan.item(), "G_L1": loss_g_l1.item(), "D_real": loss_d_real.item()}


@pytest.mark.parametrize(
    ("gan_mode", "lambda_gp"), [("vanilla", 0.0), ("lsgan", 0.0), ("wgangp", 0.0), ("wgangp", 10.0)]
)
def test_a_step_is_the_official_one_bit_for_bit(gan_mode, lambda_gp):
    # num_downs 6 has a dropout layer: the seed before each step makes both draw the same.
    model = Pix2Pix(
        GeneratorConfig(ngf=8, num_downs=6),
        DiscriminatorConfig(ndf=8),
        seed=0,
        training=TrainingConfig(gan_mode=gan_mode, lambda_gp=lambda_gp, **PLAIN),
    )
    net_g = copy.deepcopy(model.generator_module)
    net_d = copy.deepcopy(model.discriminator_module)
    a, b = image_pair(batch=2, size=64)
    torch.manual_seed(5)
    ours = model.train_step(a, b)
    torch.manual_seed(5)
    theirs = official_step(net_g, net_d, a, b, gan_mode=gan_mode, lambda_gp=lambda_gp)
    assert {k: ours[k] for k in theirs} == theirs
    for mine, official in ((model.generator_module, net_g), (model.discriminator_module, net_d)):
        for (key, value), expected in zip(
            mine.state_dict().items(), official.state_dict().values(), strict=True
        ):
            assert torch.equal(value, expected), key


def test_the_penalty_changes_what_the_critic_learns():
    a, b = image_pair(batch=2)
    after = []
    for lambda_gp in (0.0, 10.0):
        model = Pix2Pix(
            GeneratorConfig(ngf=8, num_downs=5),
            DiscriminatorConfig(ndf=8),
            seed=0,
            training=TrainingConfig(gan_mode="wgangp", lambda_gp=lambda_gp, **PLAIN),
        )
        model.train_step(a, b)
        after.append(torch.cat([p.flatten() for p in model.discriminator_module.parameters()]))
    assert not torch.equal(after[0], after[1])


def test_wgangp_loss_is_minus_mean_on_real_and_mean_on_fake():
    prediction = torch.tensor([[0.5, -1.0], [2.0, 0.5]])
    loss = GANLoss("wgangp")
    assert loss(prediction, True).item() == pytest.approx(-0.5)
    assert loss(prediction, False).item() == pytest.approx(0.5)


def test_the_penalty_of_a_linear_critic_has_its_closed_form():
    # D(x) = <w, x> per pixel: its gradient is w at every pixel, whatever x is.
    critic = torch.nn.Conv2d(6, 1, kernel_size=1, bias=False)
    torch.nn.init.normal_(critic.weight)
    real, fake = torch.randn(3, 6, 4, 4), torch.randn(3, 6, 4, 4)
    norm = (16 * critic.weight.pow(2).sum()).sqrt()
    expected = 10.0 * (norm - 1.0) ** 2
    for point in ("mixed", "real", "fake"):
        penalty = gradient_penalty(critic, real, fake, point=point)
        assert penalty.item() == pytest.approx(expected.item(), rel=1e-5)
    penalty.backward()  # the penalty trains the critic: its gradient is in the graph
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_the_penalty_mixes_each_sample_with_its_own_alpha():
    # D(x) = sum(x^2) / 2 has gradient x: the norm is that of the mixed sample itself.
    def critic(x):
        return x.pow(2).sum(dim=(1, 2, 3)) / 2

    real, fake = torch.randn(4, 6, 2, 2), torch.randn(4, 6, 2, 2)
    torch.manual_seed(9)
    alpha = torch.rand(4, 1).view(4, 1, 1, 1)
    mixed = alpha * real + (1 - alpha) * fake
    expected = 3.0 * ((mixed.flatten(1).norm(dim=1) - 2.0) ** 2).mean()
    torch.manual_seed(9)
    got = gradient_penalty(critic, real, fake, constant=2.0, lambda_gp=3.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_penalty_sends_no_gradient_into_the_images():
    critic = torch.nn.Conv2d(6, 1, kernel_size=1)
    real = torch.randn(2, 6, 4, 4, requires_grad=True)
    fake = torch.randn(2, 6, 4, 4, requires_grad=True)
    gradient_penalty(critic, real * 1, fake * 1).backward()
    assert real.grad is None and fake.grad is None


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"gan_mode": "vanilla", "lambda_gp": 10.0}, "needs gan_mode 'wgangp'"),
        ({"gan_mode": "wgangp", "lambda_gp": -1.0}, "lambda_gp must be >= 0"),
        ({"gan_mode": "wgan"}, "vanilla, lsgan, wgangp, got 'wgan'"),
    ],
)
def test_bad_gan_settings_name_the_value(options, bad):
    with pytest.raises(ValueError, match=bad):
        TrainingConfig(**options)
