"""The pix2pix training algorithm: a conditional GAN with an L1 term (Isola et al. 2017).

``Pix2Pix.train_step`` is the official ``optimize_parameters``: D on (A, G(A)) detached and on
(A, B) with the loss halved, then G against the frozen D with ``G_GAN + lambda_L1 * L1``.
``step_schedulers`` is the official ``update_learning_rate``, called at the start of each epoch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pix2pix_core.losses import GANLoss, gradient_penalty
from pix2pix_core.networks import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    init_weights,
)
from pix2pix_core.networks.paired import PairedDiscriminator
from pix2pix_core.precision import native_bf16
from pix2pix_core.training_config import (
    COMPILE_MODES,
    LR_POLICIES,
    TrainingConfig,
    build_scheduler,
    lambda_rule,
)

__all__ = ["COMPILE_MODES", "LOSS_NAMES", "LR_POLICIES", "Pix2Pix", "TrainingConfig", "lambda_rule"]

# Devices where a performance switch left on "auto" (None) turns on. channels_last pays with
# cuDNN and not on CPUs (docs/design.md#channels_last-on-cuda-only); bf16 autocast where the
# device computes bf16 natively (precision.native_bf16). Fused Adam pays on both.
_CHANNELS_LAST_DEVICES = ("cuda",)
_FUSED_ADAM_DEVICES = ("cpu", "cuda")
# nn.SyncBatchNorm refuses CPU tensors once a process group of several ranks exists.
_SYNC_BN_DEVICES = ("cuda", "xpu", "hpu")

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")
# The torch.compile modes that replay the kernels as CUDA graphs (on CUDA).
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


class Pix2Pix:
    """Generator, discriminator, their optimizers and schedulers, and the training step.

    ``netG`` and ``netD`` are the modules the step runs: after ``parallelize`` they are the
    wrapped ones, and ``netD`` is always a ``PairedDiscriminator``. ``generator_module`` and
    ``discriminator_module`` are the bare networks (what gets saved and used for inference).
    """

    def __init__(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        *,
        training: TrainingConfig | None = None,
        **training_options: Any,
    ) -> None:
        """`training` is the optimisation config; `training_options` build one instead
        (`lambda_l1=10, lr=1e-3`), for a quick model without a config object."""
        if training is not None and training_options:
            raise TypeError("give training=TrainingConfig(...) or its fields, not both")
        expected_nc = generator.input_nc + generator.output_nc
        if discriminator.input_nc != expected_nc:
            raise ValueError(
                f"discriminator input_nc {discriminator.input_nc!r} must equal the generator's "
                f"input_nc + output_nc = {expected_nc} (it sees A and B stacked)"
            )
        self.generator_config = generator
        self.discriminator_config = discriminator
        self.training_config = cfg = training or TrainingConfig(**training_options)
        self.device = torch.device(device)
        kind = self.device.type
        self.channels_last = _auto(cfg.channels_last, kind in _CHANNELS_LAST_DEVICES)
        self.autocast = _auto(cfg.autocast, native_bf16(self.device))
        self.fused_adam = _auto(cfg.fused_adam, kind in _FUSED_ADAM_DEVICES)

        # The seed covers weight init and dropout, which both draw from torch's global RNG.
        if seed is not None:
            torch.manual_seed(seed)
        net_g = init_weights(build_generator(generator), cfg.init_type, cfg.init_gain)
        net_d = init_weights(build_discriminator(discriminator), cfg.init_type, cfg.init_gain)
        for net in (net_g, net_d):
            net.to(self.device)
            if self.channels_last:
                net.to(memory_format=torch.channels_last)
        if cfg.compile:
            # Module.compile() compiles in place, so state-dict keys keep the official names.
            net_g.compile(mode=cfg.compile_mode)
            net_d.compile(mode=cfg.compile_mode)
        # CUDA graphs reuse their output memory at every replay: each step and translation
        # is marked as a new one, and what a translation returns is copied out.
        self._cuda_graphs = cfg.compile and cfg.compile_mode in _CUDA_GRAPH_MODES and kind == "cuda"
        self._generator = net_g
        self._paired_discriminator = PairedDiscriminator(net_d)
        self.netG: nn.Module = net_g
        self.netD: nn.Module = self._paired_discriminator
        self._parallel = False

        self.criterion_gan = GANLoss(cfg.gan_mode)
        self.optimizer_G = self._adam(net_g)
        self.optimizer_D = self._adam(net_d)
        self.scheduler_G = build_scheduler(self.optimizer_G, cfg)
        self.scheduler_D = build_scheduler(self.optimizer_D, cfg)

    def _adam(self, net: nn.Module) -> torch.optim.Adam:
        cfg = self.training_config
        return torch.optim.Adam(
            net.parameters(),
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            fused=True if self.fused_adam else None,
        )

    # ---- modules -------------------------------------------------------------------------

    @property
    def generator_module(self) -> nn.Module:
        """The bare generator, whatever wraps ``netG``."""
        return self._generator

    @property
    def discriminator_module(self) -> nn.Module:
        """The bare discriminator, whatever wraps ``netD``."""
        return self._paired_discriminator.discriminator

    def parallelize(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap the networks for data parallelism, e.g. ``lambda m: DistributedDataParallel(m)``.

        ``wrap`` is applied to the generator and to the ``PairedDiscriminator``; ``train_step``
        works unchanged afterwards. Norm "syncbatch" becomes ``nn.SyncBatchNorm`` here.
        The generator step runs the bare discriminator: D does not step there, and running its
        DDP wrapper would launch a gradient reduction for parameters that get no gradient.
        BatchNorm buffers follow DDP's ``broadcast_buffers`` (the default, True, copies rank 0's
        at every forward); call ``sync_buffers`` before evaluating or saving on all ranks when
        the wrapper does not broadcast them.
        """
        if self._parallel:
            raise RuntimeError("Pix2Pix.parallelize was already called")
        uses_sync_bn = "syncbatch" in (self.generator_config.norm, self.discriminator_config.norm)
        if uses_sync_bn and not sync_batch_norm_runs_on(self.device.type) and _multi_process():
            raise ValueError(
                f"norm 'syncbatch' needs one of the devices {list(_SYNC_BN_DEVICES)} when "
                f"training on several processes, got device {str(self.device)!r}; use norm "
                "'batch' (per-process statistics) on this device"
            )
        if self.generator_config.norm == "syncbatch":
            self._generator = nn.SyncBatchNorm.convert_sync_batchnorm(self._generator)
        if self.discriminator_config.norm == "syncbatch":
            self._paired_discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(
                self._paired_discriminator
            )
        # DDP registers only parameters that require grad when it is built.
        self._set_discriminator_requires_grad(True)
        self.netG = wrap(self._generator)
        self.netD = wrap(self._paired_discriminator)
        self._parallel = True

    @torch.no_grad()
    def sync_buffers(self, src: int = 0) -> None:
        """Copy rank ``src``'s BatchNorm running statistics to every rank (a collective: call it
        on all ranks). A no-op outside an initialised process group."""
        if not _multi_process():
            return
        for net in (self.generator_module, self.discriminator_module):
            for buffer in net.buffers():
                dist.broadcast(buffer, src=src)

    # ---- training ------------------------------------------------------------------------

    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One optimisation step of D then G on a batch of pairs (float NCHW in [-1, 1]).

        Returns the official loss terms: ``G_GAN``, ``G_L1`` (already multiplied by
        ``lambda_l1``, as the official log shows it), ``D_real`` and ``D_fake``.
        """
        self._new_step()
        real_a, real_b = self._prepare(real_a, "real_a"), self._prepare(real_b, "real_b")
        if real_a.shape[0] != real_b.shape[0] or real_a.shape[2:] != real_b.shape[2:]:
            raise ValueError(
                f"real_a {tuple(real_a.shape)} and real_b {tuple(real_b.shape)} must match in "
                "batch size and image size"
            )
        # 1. generate
        with self._autocast():
            fake_b = self.netG(real_a)

        # 2. discriminator: fake pairs (no gradient into G) and real pairs, loss halved
        self._set_discriminator_requires_grad(True)
        self.optimizer_D.zero_grad(set_to_none=True)
        with self._autocast():
            pred_fake, pred_real = self.netD(
                torch.cat((real_a, fake_b.detach()), 1), torch.cat((real_a, real_b), 1)
            )
        loss_d_fake = self.criterion_gan(pred_fake, False)
        loss_d_real = self.criterion_gan(pred_real, True)
        loss_d = (loss_d_fake + loss_d_real) * 0.5
        if self.training_config.lambda_gp > 0:
            # Opt-in: the official backward_D adds no penalty even with --gan_mode wgangp
            # (cal_gradient_penalty is in its networks.py, called by no model). This adds that
            # function with its defaults (mixed pairs, constant 1), through the bare D, which
            # shares its parameters (and DDP's gradient hooks) with the netD that ran above.
            with self._autocast():
                loss_d = loss_d + gradient_penalty(
                    self.discriminator_module,
                    torch.cat((real_a, real_b), 1),
                    torch.cat((real_a, fake_b.detach()), 1),
                    lambda_gp=self.training_config.lambda_gp,
                )
        loss_d.backward()
        self.optimizer_D.step()

        # 3. generator: fool the frozen D and stay close to B in L1
        self._set_discriminator_requires_grad(False)
        try:
            self.optimizer_G.zero_grad(set_to_none=True)
            with self._autocast():
                pred_fake = self.discriminator_module(torch.cat((real_a, fake_b), 1))
            loss_g_gan = self.criterion_gan(pred_fake, True)
            loss_g_l1 = F.l1_loss(fake_b.float(), real_b) * self.training_config.lambda_l1
            (loss_g_gan + loss_g_l1).backward()
            self.optimizer_G.step()
        finally:
            self._set_discriminator_requires_grad(True)

        # One host sync for all four numbers.
        values = torch.stack([loss_g_gan, loss_g_l1, loss_d_real, loss_d_fake]).detach()
        return dict(zip(LOSS_NAMES, values.tolist(), strict=True))

    def step_schedulers(self, metric: float | None = None) -> None:
        """Advance both learning-rate schedules by one epoch: call it at the START of each
        epoch, before its first ``train_step``, as the official train.py calls
        ``update_learning_rate`` (so the linear policy trains its last epoch at rate 0).

        ``metric`` is what lr_policy "plateau" watches (lower is better; e.g. the previous
        epoch's validation L1): without one (the first epoch) that schedule is not stepped and
        the rate stays. The official pix2pix never sets its metric, so there the plateau
        policy sees 0 at every epoch: pass ``metric=0.0`` for its exact schedule. The other
        policies ignore ``metric``.
        """
        with warnings.catch_warnings():
            # Stepping before the epoch's first optimizer step is the official order.
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
            for scheduler in (self.scheduler_G, self.scheduler_D):
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    if metric is not None:
                        scheduler.step(metric)
                else:
                    scheduler.step()

    @property
    def current_lr(self) -> float:
        return float(self.optimizer_G.param_groups[0]["lr"])

    # ---- inference -----------------------------------------------------------------------

    def translate(self, real_a: torch.Tensor, eval_mode: bool = False) -> torch.Tensor:
        """G(A) as float32 NCHW in [-1, 1], on the model's device.

        ``eval_mode=False`` is the paper's test-time behaviour and the official default
        (without ``--eval``): dropout stays on and BatchNorm uses the batch's statistics.
        ``eval_mode=True`` switches to running statistics and no dropout. Either way the
        generator's mode and its running statistics are as before the call. After
        ``parallelize`` with norm "syncbatch", train-mode normalisation is a collective: call
        it on every rank, or use ``eval_mode=True``.

        The training model's own modules run (compiled, as trained): in the paper's mode an
        output depends on its batch, as in the official test at a batch size above 1. The
        jobs' test time is ``pix2pix_core.inference``'s, whose outputs do not.
        """
        self._new_step()
        net = self.generator_module
        x = self._prepare(real_a, "real_a")
        was_training = net.training
        # Train-mode BatchNorm updates its running stats even under inference_mode; keep them,
        # so evaluating mid-training leaves the model exactly as it was.
        saved = None if eval_mode else [b.clone() for b in net.buffers()]
        net.train(not eval_mode)
        try:
            with torch.inference_mode(), self._autocast():
                fake_b = net(x)
        finally:
            net.train(was_training)
            if saved is not None:
                with torch.no_grad():
                    for buffer, value in zip(net.buffers(), saved, strict=True):
                        buffer.copy_(value)
        # One copy at most: a forced one out of the CUDA graph's memory, else only where the
        # dtype or the layout changes.
        return fake_b.to(
            torch.float32, memory_format=torch.contiguous_format, copy=self._cuda_graphs
        )

    def _new_step(self) -> None:
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    # ---- state ---------------------------------------------------------------------------

    def config_dict(self) -> dict[str, dict[str, Any]]:
        """The three configs as a JSON-able dict; ``from_config_dict`` rebuilds the model."""
        return {
            "generator": self.generator_config.to_dict(),
            "discriminator": self.discriminator_config.to_dict(),
            "training": self.training_config.to_dict(),
        }

    @classmethod
    def from_config_dict(
        cls,
        config: dict[str, dict[str, Any]],
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> Pix2Pix:
        return cls(
            GeneratorConfig.from_dict(config["generator"]),
            DiscriminatorConfig.from_dict(config["discriminator"]),
            device,
            seed,
            training=TrainingConfig.from_dict(config.get("training", {})),
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "netG": self.generator_module.state_dict(),
            "netD": self.discriminator_module.state_dict(),
            "optimizer_G": self.optimizer_G.state_dict(),
            "optimizer_D": self.optimizer_D.state_dict(),
            "scheduler_G": self.scheduler_G.state_dict(),
            "scheduler_D": self.scheduler_D.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator_module.load_state_dict(state["netG"])
        self.discriminator_module.load_state_dict(state["netD"])
        for optimizer, key in (
            (self.optimizer_G, "optimizer_G"),
            (self.optimizer_D, "optimizer_D"),
        ):
            optimizer.load_state_dict(state[key])
            # Saved param groups carry the saving device's kernel choice; use this device's.
            for group in optimizer.param_groups:
                group["fused"] = True if self.fused_adam else None
                group["foreach"] = None
        self.scheduler_G.load_state_dict(state["scheduler_G"])
        self.scheduler_D.load_state_dict(state["scheduler_D"])

    # ---- helpers -------------------------------------------------------------------------

    def _prepare(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if not torch.is_tensor(x) or x.ndim != 4 or not x.is_floating_point():
            got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if torch.is_tensor(x) else type(x)
            raise ValueError(
                f"{name} must be a float NCHW tensor in [-1, 1] (see transforms.to_tensor), "
                f"got {got}"
            )
        multiple = self.generator_config.multiple
        if x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(
                f"{name} is {x.shape[2]}x{x.shape[3]}, but generator "
                f"{self.generator_config.netG} (depth {self.generator_config.depth}) needs "
                f"sides that are multiples of {multiple}"
            )
        x = x.to(self.device, torch.float32, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _set_discriminator_requires_grad(self, flag: bool) -> None:
        for param in self.discriminator_module.parameters():
            param.requires_grad_(flag)


def sync_batch_norm_runs_on(device_type: str) -> bool:
    """Whether norm "syncbatch" can train on `device_type` ("cpu", "cuda", ...) with several
    processes."""
    return device_type in _SYNC_BN_DEVICES


def _multi_process() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _auto(setting: bool | None, default: bool) -> bool:
    return default if setting is None else setting
