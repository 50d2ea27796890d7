"""The official pytorch-CycleGAN-and-pix2pix recipes, rebuilt here independently of
pix2pix_core, so that the tests compare the project with the official behaviour and not
with itself: the ResnetGenerator's layer list, the 0-layer PatchGAN, init_weights' rules,
the GAN objectives, cal_gradient_penalty and get_scheduler with train.py's call order."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.optim import lr_scheduler


def norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


class _Block(nn.Module):
    def __init__(self, dim: int, norm: str, use_dropout: bool) -> None:
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim)]
        layers += [nn.ReLU(True), *([nn.Dropout(0.5)] if use_dropout else [])]
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetLike(nn.Module):
    """define_G(netG="resnet_{n}blocks"): stem, 2 downsamplings, n blocks, 2 upsamplings, head."""

    def __init__(
        self, input_nc: int, output_nc: int, ngf: int, n_blocks: int, norm: str, use_dropout: bool
    ) -> None:
        super().__init__()
        bias = norm == "instance"
        m: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias)]
        m += [norm_layer(norm, ngf), nn.ReLU(True)]
        for c in (ngf, 2 * ngf):
            m += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), norm_layer(norm, 2 * c)]
            m += [nn.ReLU(True)]
        m += [_Block(4 * ngf, norm, use_dropout) for _ in range(n_blocks)]
        for c in (4 * ngf, 2 * ngf):
            up = nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias)
            m += [up, norm_layer(norm, c // 2), nn.ReLU(True)]
        m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def zero_layer_patchgan(input_nc: int, ndf: int) -> nn.Module:
    """NLayerDiscriminator(n_layers=0) with batch norm: its loop adds nothing, nf_mult is 1."""
    net = nn.Module()
    net.model = nn.Sequential(
        nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf, 4, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(ndf),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, 1, 4, stride=1, padding=1),
    )
    return net


@torch.no_grad()
def init_like(net: nn.Module, init_type: str, gain: float) -> None:
    """init_weights: by class name, Conv*/Linear* weights by type and zero biases;
    BatchNorm2d weights N(1, gain) and zero biases; applied children first."""

    def visit(m: nn.Module) -> None:
        name = type(m).__name__
        if hasattr(m, "weight") and ("Conv" in name or "Linear" in name):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.constant_(m.bias, 0.0)

    net.apply(visit)


def gan_loss(gan_mode: str, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """GANLoss.__call__: a label map expanded to the prediction, or the WGAN critic's sign."""
    if gan_mode == "wgangp":
        return -prediction.mean() if target_is_real else prediction.mean()
    target = torch.tensor(1.0 if target_is_real else 0.0).expand_as(prediction)
    criterion = nn.MSELoss() if gan_mode == "lsgan" else nn.BCEWithLogitsLoss()
    return criterion(prediction, target)


def gradient_penalty_like(
    net: nn.Module, real: torch.Tensor, fake: torch.Tensor, lambda_gp: float = 10.0
) -> torch.Tensor:
    """cal_gradient_penalty(type="mixed", constant=1.0): alpha per sample, expanded over the
    sample's elements; 1e-16 added to each gradient element before the L2 norm."""
    batch = real.shape[0]
    alpha = torch.rand(batch, 1).expand(batch, real.nelement() // batch).contiguous()
    mixed = (alpha.view(*real.shape) * real + (1 - alpha.view(*real.shape)) * fake).detach()
    mixed.requires_grad_(True)
    out = net(mixed)
    (grad,) = torch.autograd.grad(out, mixed, torch.ones(out.size()), create_graph=True)
    return (((grad.view(batch, -1) + 1e-16).norm(2, dim=1) - 1.0) ** 2).mean() * lambda_gp


def official_lrs(
    policy: str,
    *,
    lr: float,
    n_epochs: int,
    n_epochs_decay: int,
    epoch_count: int = 1,
    lr_decay_iters: int = 50,
) -> list[float]:
    """The rate each epoch trains at: get_scheduler's scheduler, stepped by train.py's
    `update_learning_rate()` at the start of every epoch in
    range(epoch_count, n_epochs + n_epochs_decay + 1). pix2pix never sets the metric that
    the plateau policy steps with, so it stays BaseModel's 0."""
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr)
    if policy == "linear":

        def rule(epoch: int) -> float:
            return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1)

        scheduler = lr_scheduler.LambdaLR(optimizer, lr_lambda=rule)
    elif policy == "step":
        scheduler = lr_scheduler.StepLR(optimizer, step_size=lr_decay_iters, gamma=0.1)
    elif policy == "plateau":
        scheduler = lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.2, threshold=0.01, patience=5
        )
    else:
        scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs, eta_min=0)
    rates = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
        for _ in range(epoch_count, n_epochs + n_epochs_decay + 1):
            scheduler.step(0) if policy == "plateau" else scheduler.step()
            rates.append(optimizer.param_groups[0]["lr"])
    return rates
