"""The option groups that several verbs share; each verb declares the groups it takes.

The model's groups keep the official flag names and take their defaults from
pix2pix_core's configs (the paper's), and turn into those configs:

    ArchitectureOptions      -> GeneratorConfig          (train, tune, retrain, translate,
    + DiscriminatorOptions   -> DiscriminatorConfig       evaluate and register read an
    OptimisationOptions                                   official *_net_G.pth through it)
    + PerformanceOptions     -> TrainingConfig
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.config.fields import default_of, option
from pipelines.config.loader import build
from pix2pix_core import DiscriminatorConfig, GeneratorConfig, TrainingConfig
from pix2pix_core.losses import GAN_MODES
from pix2pix_core.networks import DISCRIMINATORS, GENERATORS, INIT_TYPES
from pix2pix_core.training import COMPILE_MODES, LR_POLICIES


def _names(registry: dict) -> str:
    return " | ".join(registry)


# -- where things are and where they are recorded ---------------------------------------


@dataclass(frozen=True, kw_only=True)
class StorageOptions:
    """Storage: how to reach the URLs."""

    storage_options: dict = option({}, "JSON object of fsspec options (endpoint, keys, ...)")


@dataclass(frozen=True, kw_only=True)
class TrackingOptions:
    """Tracking: the MLflow store."""

    tracking_uri: str | None = option(
        None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"
    )


@dataclass(frozen=True, kw_only=True)
class ExperimentOptions:
    """Experiment: where MLflow records the runs."""

    experiment: str = option("pix2pix", "MLflow experiment name")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Run: its folder in storage and its name."""

    storage_path: str = option("./runs", "where runs and checkpoints live (any fsspec URL)")
    run_name: str | None = option(None, "name of the run; rerunning a name resumes it")


@dataclass(frozen=True, kw_only=True)
class CommonOptions(StorageOptions, TrackingOptions, ExperimentOptions, RunOptions):
    """Common: the run's folder and name, MLflow, storage."""


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """Ray: the cluster."""

    ray_address: str | None = option(
        None, "Ray cluster address (default: RAY_ADDRESS, else start a local Ray)"
    )


# -- the model --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ArchitectureOptions:
    """Architecture: the generator (and the norm of both networks)."""

    netG: str = option(
        default_of(GeneratorConfig, "netG"), f"generator: {_names(GENERATORS)}", learns=True
    )
    num_downs: int | None = option(
        None, "U-Net depth; overrides a U-Net netG's (sides divisible by 2^N)", learns=True
    )
    ngf: int = option(
        default_of(GeneratorConfig, "ngf"), "generator filters in the first layer", learns=True
    )
    norm: str = option(
        default_of(GeneratorConfig, "norm"),
        "normalisation: batch | instance | syncbatch | none",
        learns=True,
    )
    no_dropout: bool = option(
        False, "no dropout in the generator (U-Net and ResNet alike)", learns=True
    )
    input_nc: int = option(default_of(GeneratorConfig, "input_nc"), "input channels", learns=True)
    output_nc: int = option(
        default_of(GeneratorConfig, "output_nc"), "output channels", learns=True
    )

    def generator_config(self) -> GeneratorConfig:
        return build(
            GeneratorConfig,
            netG=self.netG,
            num_downs=self.num_downs,
            ngf=self.ngf,
            norm=self.norm,
            use_dropout=not self.no_dropout,
            input_nc=self.input_nc,
            output_nc=self.output_nc,
        )


@dataclass(frozen=True, kw_only=True)
class DiscriminatorOptions:
    """Discriminator: the PatchGAN.

    netD, else n_layers_D, else patch_size decides; what is given must agree (a patch_size
    other than its default 70 must be the receptive field of netD/n_layers_D).
    """

    netD: str | None = option(
        default_of(DiscriminatorConfig, "netD"),
        f"discriminator: {_names(DISCRIMINATORS)} (unset: from patch_size, 70 = basic)",
        learns=True,
    )
    ndf: int = option(
        default_of(DiscriminatorConfig, "ndf"), "discriminator filters, first layer", learns=True
    )
    patch_size: int = option(
        default_of(DiscriminatorConfig, "patch_size"),
        "PatchGAN receptive field N: 1 (pixel) | 16 | 70 (basic) | 286",
        learns=True,
    )
    n_layers_D: int | None = option(
        None,
        "layers of the n_layers PatchGAN (unset: 3 with --netD n_layers); overrides patch_size",
        learns=True,
    )

    def discriminator_config(self, architecture: ArchitectureOptions) -> DiscriminatorConfig:
        """The PatchGAN for `architecture`'s generator: its norm, and A's plus B's channels."""
        return build(
            DiscriminatorConfig,
            netD=self.netD,
            patch_size=self.patch_size,
            n_layers=self.n_layers_D,
            ndf=self.ndf,
            norm=architecture.norm,
            input_nc=architecture.input_nc + architecture.output_nc,
        )


@dataclass(frozen=True, kw_only=True)
class OptimisationOptions:
    """Optimisation: the losses, Adam and the schedule."""

    gan_mode: str = option(
        default_of(TrainingConfig, "gan_mode"), f"GAN loss: {_names(GAN_MODES)}", learns=True
    )
    lambda_L1: float = option(
        default_of(TrainingConfig, "lambda_l1"), "weight of the L1 loss", learns=True
    )
    lambda_gp: float = option(
        default_of(TrainingConfig, "lambda_gp"),
        "weight of the WGAN-GP gradient penalty, with --gan_mode wgangp (10 in WGAN-GP; the "
        "official pix2pix adds none)",
        learns=True,
    )
    lr: float = option(default_of(TrainingConfig, "lr"), "Adam learning rate", learns=True)
    beta1: float = option(default_of(TrainingConfig, "beta1"), "Adam beta1", learns=True)
    n_epochs: int = option(
        default_of(TrainingConfig, "n_epochs"), "epochs at the initial lr", learns=True
    )
    n_epochs_decay: int = option(
        default_of(TrainingConfig, "n_epochs_decay"),
        "epochs of linear decay of the lr to zero",
        learns=True,
    )
    lr_policy: str = option(
        default_of(TrainingConfig, "lr_policy"),
        f"lr schedule: {_names(LR_POLICIES)} (step: x0.1 every lr_decay_iters epochs; "
        "plateau: x0.2 after 5 epochs without progress; cosine: to 0 over n_epochs)",
        learns=True,
    )
    lr_decay_iters: int = option(
        default_of(TrainingConfig, "lr_decay_iters"),
        "epochs between the step policy's decays",
        learns=True,
    )
    init_type: str = option(
        default_of(TrainingConfig, "init_type"),
        f"weight initialisation: {_names(INIT_TYPES)}",
        learns=True,
    )
    init_gain: float = option(
        default_of(TrainingConfig, "init_gain"),
        "scale of the normal, xavier and orthogonal initialisations",
        learns=True,
    )

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def training_config(self, performance: PerformanceOptions) -> TrainingConfig:
        return build(
            TrainingConfig,
            gan_mode=self.gan_mode,
            lambda_l1=self.lambda_L1,
            lambda_gp=self.lambda_gp,
            lr=self.lr,
            beta1=self.beta1,
            n_epochs=self.n_epochs,
            n_epochs_decay=self.n_epochs_decay,
            lr_policy=self.lr_policy,
            lr_decay_iters=self.lr_decay_iters,
            init_type=self.init_type,
            init_gain=self.init_gain,
            **performance.training_fields(),
        )


@dataclass(frozen=True, kw_only=True)
class PerformanceOptions:
    """Performance: how fast the networks run (never what they compute)."""

    channels_last: bool | None = option(
        None,
        "channels_last memory format (default: training on CUDA only; translate's actors on "
        "every device)",
    )
    autocast: bool | None = option(
        None,
        "bf16 autocast (default: where the device computes bf16 natively: CUDA from "
        "Ampere on, CPUs with AVX512-BF16 or AMX)",
    )
    compile: bool = option(False, "torch.compile the networks")
    compile_mode: str = option(
        default_of(TrainingConfig, "compile_mode"),
        "torch.compile mode; reduce-overhead replays CUDA graphs (for launch-bound steps)",
        choices=COMPILE_MODES,
    )

    def training_fields(self) -> dict[str, Any]:
        """These switches as pix2pix_core.TrainingConfig names them."""
        return {
            "channels_last": self.channels_last,
            "autocast": self.autocast,
            "compile": self.compile,
            "compile_mode": self.compile_mode,
        }

    def validate(self) -> None:
        """What TrainingConfig refuses (--compile_mode without --compile), as a UserError."""
        build(TrainingConfig, **self.training_fields())
