"""The search space of a sweep: a YAML mapping of option name -> distribution.

    lambda_L1: {loguniform: [1, 1000]}     # a number drawn log-uniformly
    patch_size: {choice: [1, 16, 70, 286]} # one of the values
    norm: {choice: [batch, instance]}
    n_epochs: 50                           # a plain value fixes the option for every trial

Keys are the option names `pix2pix train` takes (the YAML keys of `--config`), so any
train option can be searched; values are checked against the option's type and rules
before a trial starts, so a typo fails in a second, not after an hour of training.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ray import tune

from pipelines.common.errors import UserError
from pipelines.config.fields import coerce, field_type
from pipelines.train.options import TrainConfig

# The paper's ablations (Isola et al. 2017): the L1 weight (sec. 4.2, lambda = 100 in the
# paper, searched on a log scale around it), the PatchGAN receptive field N (sec. 4.4:
# 1x1 PixelGAN, 16x16, 70x70, 286x286 ImageGAN) and the normalisation (batch vs instance).
# `infra/search_space.example.yaml` holds the same space; a test keeps the two equal.
PAPER_SEARCH_SPACE: dict[str, Any] = {
    "lambda_L1": {"loguniform": [1, 1000]},
    "patch_size": {"choice": [1, 16, 70, 286]},
    "norm": {"choice": ["batch", "instance"]},
}

# distribution -> (arguments it takes, option types it applies to; None: any type)
DISTRIBUTIONS: dict[str, tuple[str, tuple[type, ...] | None]] = {
    "choice": ("a non-empty list of values", None),
    "grid": ("a non-empty list of values, each tried num_samples times", None),
    "uniform": ("[low, high]", (float,)),
    "loguniform": ("[low, high], 0 < low", (float,)),
    "quniform": ("[low, high, q]", (float,)),
    "randint": ("[low, high), integers", (int,)),
    "lograndint": ("[low, high), integers, 0 < low", (int,)),
}


@dataclass(frozen=True, kw_only=True)
class Param:
    """One searched option: its name, distribution and arguments (plain YAML values)."""

    name: str
    dist: str
    args: tuple

    def __post_init__(self) -> None:
        if self.dist not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown distribution {self.dist!r}; choose one of {list(DISTRIBUTIONS)}"
            )

    def to_tune(self) -> Any:
        """The Ray Tune domain (`tune.loguniform(1, 1000)`, ...)."""
        if self.dist == "choice":
            return tune.choice(list(self.args))
        if self.dist == "grid":
            return tune.grid_search(list(self.args))
        return getattr(tune, self.dist)(*self.args)

    def to_yaml(self) -> dict[str, list]:
        return {self.dist: list(self.args)}


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """Searched options (`params`) and options fixed for every trial (`fixed`)."""

    params: tuple[Param, ...]
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def has_grid(self) -> bool:
        return any(p.dist == "grid" for p in self.params)

    def param_space(self) -> dict[str, Any]:
        """The Tuner's `param_space`: a Tune domain per searched option (fixed ones apart)."""
        return {p.name: p.to_tune() for p in self.params}

    def to_yaml(self) -> dict[str, Any]:
        """The space as the YAML mapping it was read from (for MLflow and the sweep record)."""
        return {**self.fixed, **{p.name: p.to_yaml() for p in self.params}}


def parse_search_space(
    values: Mapping[str, Any],
    base: TrainConfig,
    *,
    exclude: Mapping[str, str] = MappingProxyType({}),
    source: str = "search space",
) -> SearchSpace:
    """A YAML mapping -> SearchSpace over the options of `base`.

    `base` holds the sweep's own settings (its flags and `--config`): each value in the
    space is checked by putting it into `base` and validating the result, so a combination
    the networks reject fails here. `exclude` maps options that cannot be
    searched to the reason. Every error is a UserError naming `source` and the key.
    """
    options = {f.name: group for group in base.groups for f in dataclasses.fields(group)}
    if not isinstance(values, Mapping):
        raise UserError(
            f"{source}: expected a mapping of option: distribution, got {type(values).__name__}"
        )
    if not values:
        raise UserError(f"{source}: the search space is empty")
    params, fixed = [], {}
    for name, spec in values.items():
        if name in exclude:
            raise UserError(f"{source}: {name!r} cannot be searched: {exclude[name]}")
        if name not in options:
            close = difflib.get_close_matches(str(name), list(options), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{source}: {name!r} is not an option that can be searched{hint}")
        tp = field_type(options[name], name)
        if tp is dict:
            raise UserError(f"{source}: {name!r} is a mapping option and cannot be searched")
        if isinstance(spec, list):
            raise UserError(
                f"{source}: {name}: a plain list is ambiguous; write {{choice: {spec!r}}} "
                "to search over the values"
            )
        if not isinstance(spec, Mapping):
            fixed[name] = _checked_value(source, base, name, tp, spec)
            continue
        params.append(_parse_param(source, base, name, tp, spec))
    if not params:
        raise UserError(f"{source}: nothing to search (every option has a fixed value)")
    return SearchSpace(params=tuple(params), fixed=fixed)


def _parse_param(
    source: str, base: TrainConfig, name: str, tp: type, spec: Mapping[str, Any]
) -> Param:
    where = f"{source}: {name}"
    if len(spec) != 1:
        raise UserError(
            f"{where}: expected one distribution such as {{loguniform: [1, 1000]}}, "
            f"got {dict(spec)!r}"
        )
    ((dist, args),) = spec.items()
    if dist not in DISTRIBUTIONS:
        close = difflib.get_close_matches(str(dist), list(DISTRIBUTIONS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"{where}: unknown distribution {dist!r}{hint}; choose one of "
            f"{', '.join(DISTRIBUTIONS)}"
        )
    shape, types_ok = DISTRIBUTIONS[dist]
    if not isinstance(args, list) or not args:
        raise UserError(f"{where}: {dist} takes {shape}, got {args!r}")
    if types_ok is not None and tp not in types_ok:
        fits = [d for d, (_, t) in DISTRIBUTIONS.items() if t is None or tp in t]
        raise UserError(
            f"{where}: {dist} does not fit a {tp.__name__} option; use one of {', '.join(fits)}"
        )
    if types_ok is None:  # choice, grid: every value must be a valid setting
        checked = [_checked_value(source, base, name, tp, v) for v in args]
        if len(set(map(repr, checked))) != len(checked):
            raise UserError(f"{where}: {dist} lists a value twice: {args!r}")
        return Param(name=name, dist=dist, args=tuple(checked))
    return Param(name=name, dist=dist, args=_range_args(source, base, name, tp, dist, shape, args))


def _range_args(
    source: str, base: TrainConfig, name: str, tp: type, dist: str, shape: str, args: list
) -> tuple:
    where = f"{source}: {name}"
    n_args = 3 if dist == "quniform" else 2
    floats = [_as_number(a) for a in args]
    if len(args) != n_args or None in floats:
        raise UserError(f"{where}: {dist} takes {shape}, got {args!r}")
    if tp is int and any(not f.is_integer() for f in floats):
        raise UserError(f"{where}: {dist} takes integers, got {args!r}")
    nums = [tp(f) for f in floats]
    low, high = nums[0], nums[1]
    if not low < high:
        raise UserError(f"{where}: {dist} needs low < high, got {args!r}")
    if dist.startswith("log") and low <= 0:
        raise UserError(f"{where}: {dist} needs 0 < low, got {args!r}")
    if dist == "quniform" and not nums[2] > 0:
        raise UserError(f"{where}: quniform needs q > 0, got {args!r}")
    # The ends must be valid settings (randint's high is exclusive).
    for end in (low, high - 1 if tp is int else high):
        _checked_value(source, base, name, tp, end)
    return tuple(nums)


def _as_number(value: Any) -> float | None:
    """A finite number, or None. Strings count: YAML 1.1 reads `1e-4` (no dot) as a string."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _checked_value(source: str, base: TrainConfig, name: str, tp: type, value: Any) -> Any:
    """`value` coerced to the option's type and accepted in the sweep's settings."""
    try:
        coerced = coerce(name, tp, value)
    except UserError as err:
        raise UserError(f"{source}: {err}") from None
    try:
        base.replace(**{name: coerced}).validate()
    except (UserError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{source}: {name}: {str(err).strip(chr(39) + chr(34))}") from None
    return coerced
