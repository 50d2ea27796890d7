"""Options: dataclasses, loaded from YAML, overridden by CLI flags.

Each option is a dataclass field whose name is the flag name (the official pix2pix name
where one exists: `--netG`, `--lambda_L1`, ...) and also its YAML key, so a setting has one
name and one default everywhere. A verb combines several option dataclasses; `--config
FILE` gives a flat YAML mapping over all of them, and flags given on the command line win.

    parser = argparse.ArgumentParser()
    add_options(parser, ModelOptions, CommonOptions)
    args = parser.parse_args()
    model, common = load_options(args, ModelOptions, CommonOptions)
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import yaml

from pipelines.common.errors import UserError
from pix2pix_core import DiscriminatorConfig, GeneratorConfig, TrainingConfig
from pix2pix_core.training import COMPILE_MODES

T = TypeVar("T")


def option(default: Any, help: str, *, choices: tuple | None = None, required: bool = False) -> Any:
    """A dataclass field that is also a CLI flag and a YAML key.

    `required` only marks the flag in --help: each verb checks it itself, since a value may
    also come from --config.
    """
    meta = {"help": help, "choices": choices, "required": required}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _default(cls: type, name: str) -> Any:
    """The default of a pix2pix_core config field, so pipelines never restate it."""
    return cls.__dataclass_fields__[name].default


# --------------------------------------------------------------------------------------
# Shared option groups
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CommonOptions:
    """Flags every verb shares."""

    storage_path: str = option("./runs", "where runs and checkpoints live (any fsspec URL)")
    run_name: str | None = option(None, "name of the run; rerunning a name resumes it")
    tracking_uri: str = option(
        os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"), "MLflow tracking URI"
    )
    experiment: str = option("pix2pix", "MLflow experiment name")
    storage_options: dict = option({}, "JSON object of fsspec options (endpoint, keys, ...)")


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """For verbs that run on Ray."""

    ray_address: str | None = option(None, "Ray cluster address (default: start or join local)")


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """The network and the optimisation: official flag names, the paper's defaults."""

    netG: str = option(_default(GeneratorConfig, "netG"), "generator: unet_256 | unet_128")
    num_downs: int | None = option(None, "U-Net depth; overrides netG (sides divisible by 2^N)")
    ngf: int = option(_default(GeneratorConfig, "ngf"), "generator filters in the first layer")
    ndf: int = option(_default(DiscriminatorConfig, "ndf"), "discriminator filters, first layer")
    patch_size: int = option(
        _default(DiscriminatorConfig, "patch_size"), "PatchGAN receptive field N: 1|16|70|286"
    )
    n_layers_D: int | None = option(None, "PatchGAN layers; overrides patch_size")
    norm: str = option(
        _default(GeneratorConfig, "norm"), "normalisation: batch | instance | syncbatch | none"
    )
    no_dropout: bool = option(False, "no dropout in the generator")
    input_nc: int = option(_default(GeneratorConfig, "input_nc"), "input channels")
    output_nc: int = option(_default(GeneratorConfig, "output_nc"), "output channels")
    gan_mode: str = option(_default(TrainingConfig, "gan_mode"), "GAN loss: vanilla | lsgan")
    lambda_L1: float = option(_default(TrainingConfig, "lambda_l1"), "weight of the L1 loss")
    lr: float = option(_default(TrainingConfig, "lr"), "Adam learning rate")
    beta1: float = option(_default(TrainingConfig, "beta1"), "Adam beta1")
    n_epochs: int = option(_default(TrainingConfig, "n_epochs"), "epochs at the initial lr")
    n_epochs_decay: int = option(
        _default(TrainingConfig, "n_epochs_decay"), "epochs of linear decay of the lr to zero"
    )
    channels_last: bool | None = option(None, "channels_last memory format (default: auto)")
    autocast: bool | None = option(
        None,
        "bf16 autocast (default: where the device computes bf16 natively: CUDA from "
        "Ampere on, CPUs with AVX512-BF16 or AMX)",
    )
    compile: bool = option(False, "torch.compile the networks")
    compile_mode: str = option(
        _default(TrainingConfig, "compile_mode"),
        "torch.compile mode; reduce-overhead replays CUDA graphs (for launch-bound steps)",
        choices=COMPILE_MODES,
    )

    def generator_config(self) -> GeneratorConfig:
        return _core(
            GeneratorConfig,
            netG=self.netG,
            num_downs=self.num_downs,
            ngf=self.ngf,
            norm=self.norm,
            use_dropout=not self.no_dropout,
            input_nc=self.input_nc,
            output_nc=self.output_nc,
        )

    def discriminator_config(self) -> DiscriminatorConfig:
        return _core(
            DiscriminatorConfig,
            patch_size=self.patch_size,
            n_layers=self.n_layers_D,
            ndf=self.ndf,
            norm=self.norm,
            input_nc=self.input_nc + self.output_nc,
        )

    def training_config(self) -> TrainingConfig:
        return _core(
            TrainingConfig,
            gan_mode=self.gan_mode,
            lambda_l1=self.lambda_L1,
            lr=self.lr,
            beta1=self.beta1,
            n_epochs=self.n_epochs,
            n_epochs_decay=self.n_epochs_decay,
            channels_last=self.channels_last,
            autocast=self.autocast,
            compile=self.compile,
            compile_mode=self.compile_mode,
        )

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def validate(self) -> None:
        """Build the core configs once, so a bad value fails before any work starts."""
        self.generator_config()
        self.discriminator_config()
        self.training_config()


def _core(cls: type[T], **kwargs: Any) -> T:
    try:
        return cls(**kwargs)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(_message(err)) from None


def _message(err: Exception) -> str:
    """The error's text; a KeyError's str() quotes its message, so take it bare."""
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err)


# --------------------------------------------------------------------------------------
# Machinery
# --------------------------------------------------------------------------------------


def _base_type(tp: Any) -> type:
    """`int | None` -> int; `dict` -> dict."""
    if isinstance(tp, str):
        tp = eval(tp, vars(typing) | {"dict": dict})  # resolve `from __future__` annotations
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return typing.get_origin(tp) or tp


def _parse_bool(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _coerce(name: str, tp: type, value: Any) -> Any:
    """A YAML or flag value -> the field's type, or a UserError naming the key."""
    if value is None:
        return None
    try:
        if tp is bool:
            return value if isinstance(value, bool) else _parse_bool(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is dict:
            return json.loads(value) if isinstance(value, str) else dict(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
    except (ValueError, TypeError, json.JSONDecodeError):
        kind = {bool: "true/false", int: "an integer", float: "a number", dict: "a JSON object"}
        raise UserError(f"{name}: expected {kind.get(tp, tp.__name__)}, got {value!r}") from None
    return value


def _help_text(text: str, default: Any, required: bool | None) -> str:
    """The help, with "(required)" or the default unless the text already tells it."""
    if required:
        return f"{text} (required)"
    if default is None or "default:" in text or "unset:" in text:
        return text
    return f"{text} (default: {default})"


class OnOff(argparse.Action):
    """`--NAME` sets an option, `--no_NAME` clears it: the official code's spelling of a
    negation (`--no_dropout`, `--no_flip`). argparse's own `--no-NAME` works too, unlisted.
    """

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        name = option_strings[0].removeprefix("--")
        super().__init__([*option_strings, f"--no_{name}"], dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, not (option_string or "").startswith("--no"))

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


_HIDDEN = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS}


def add_options(
    parser: argparse.ArgumentParser, *classes: type, exclude: frozenset[str] = frozenset()
) -> None:
    """Add one `--name` flag per field of each option dataclass (and `--config`).

    `exclude`: fields that are no flag of this verb (still YAML keys, which the verb checks).
    """
    if not any(a.dest == "config" for a in parser._actions):
        parser.add_argument("--config", help="YAML file of options (flags override it)")
    for cls in classes:
        group = parser.add_argument_group(
            cls.__doc__.strip().splitlines()[0].rstrip(".") if cls.__doc__ else None
        )
        for f in fields(cls):
            if f.name in exclude or any(a.dest == f.name for a in parser._actions):
                continue
            tp = _base_type(f.type)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            help_text = _help_text(f.metadata.get("help", ""), default, f.metadata.get("required"))
            kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
            if tp is bool and default is False:
                kwargs["action"] = "store_true"
            elif tp is bool:
                kwargs["action"] = OnOff
                group.add_argument(f"--no-{f.name}", dest=f.name, action="store_false", **_HIDDEN)
            else:
                kwargs["type"] = str  # coerced later, with the same rules as YAML
                kwargs["metavar"] = tp.__name__.upper()
                if f.metadata.get("choices"):
                    kwargs["choices"] = f.metadata["choices"]
            group.add_argument(f"--{f.name}", **kwargs)


def read_yaml(path: str) -> dict[str, Any]:
    """A flat YAML mapping of option names to values."""
    from pipelines.common.storage import Location

    try:
        text = Location.parse(path).read_bytes()
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of option: value, got {type(values).__name__}")
    return values


def load_options(
    args: argparse.Namespace, *classes: type, extra_keys: set[str] = frozenset()
) -> tuple:
    """Build each option dataclass from `--config` YAML, then the flags given.

    An unknown YAML key or a bad value is a UserError that names it. `extra_keys` are
    YAML keys a verb reads itself (e.g. a search space).
    """
    given = {k: v for k, v in vars(args).items() if k != "config"}
    from_yaml = read_yaml(args.config) if getattr(args, "config", None) else {}
    known = {f.name for cls in classes for f in fields(cls)} | set(extra_keys)
    unknown = sorted(set(from_yaml) - known)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UserError(f"{args.config}: unknown option {', '.join(hints)}")
    built = []
    for cls in classes:
        values = {}
        for f in fields(cls):
            if f.name in given:
                values[f.name] = _coerce(f"--{f.name}", _base_type(f.type), given[f.name])
            elif f.name in from_yaml:
                values[f.name] = _coerce(f.name, _base_type(f.type), from_yaml[f.name])
        try:
            built.append(cls(**values))
        except (ValueError, KeyError) as err:
            raise UserError(_message(err)) from None
    return tuple(built)


def options_dict(*instances: Any) -> dict[str, Any]:
    """Flat {name: value} of option dataclasses, for MLflow params and saved configs."""
    out: dict[str, Any] = {}
    for inst in instances:
        out.update(dataclasses.asdict(inst))
    return out
