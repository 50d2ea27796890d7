"""An option: a dataclass field that is also a CLI flag and a YAML key, with one default.

Each field's name is its flag and its YAML key (the official pix2pix name where one
exists: `--netG`, `--lambda_L1`, ...). `learns=True` marks a setting that changes what
is learnt (or, for a sweep, which model comes out of it); the run identity, the sweep
identity, the retrain workflow's skipping and the options a sweep may search are all
derived from that mark (`learned`, `learns`).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from dataclasses import field, fields
from typing import Any

from pipelines.common.errors import UserError


def option(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    required: bool = False,
    learns: bool = False,
) -> Any:
    """A dataclass field that is also a CLI flag and a YAML key.

    `required` only marks the flag in --help: each verb checks it itself, since a value may
    also come from --config. `learns`: changing it changes what a run learns.
    """
    meta = {"help": help, "choices": choices, "required": required, "learns": learns}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def default_of(cls: type, name: str) -> Any:
    """The default of a dataclass field (e.g. a pix2pix_core config's), never restated."""
    return cls.__dataclass_fields__[name].default


def learns(group: type | Any, name: str) -> bool:
    """Whether option `name` of `group` (a class or an instance) changes what is learnt."""
    return bool(group.__dataclass_fields__[name].metadata.get("learns"))


def learned(*groups: Any) -> dict[str, Any]:
    """{name: value} of the options marked `learns` in the option instances `groups`."""
    return {
        f.name: getattr(group, f.name)
        for group in groups
        for f in fields(group)
        if f.metadata.get("learns")
    }


def flat(*groups: Any) -> dict[str, Any]:
    """{name: value} of every option of `groups`, for MLflow params and saved configs."""
    out: dict[str, Any] = {}
    for group in groups:
        out.update(dataclasses.asdict(group))
    return out


def names(*classes: type) -> list[str]:
    """Every option name of the option classes, in order."""
    return [f.name for cls in classes for f in fields(cls)]


def replace_options(groups: Iterable[Any], values: dict[str, Any]) -> tuple:
    """`groups` with `values` (option name -> value) put in the group that holds each;
    a name no group holds is a KeyError."""
    groups = tuple(groups)
    unknown = set(values) - set(names(*(type(g) for g in groups)))
    if unknown:
        raise KeyError(f"no option group holds {sorted(unknown)}")
    return tuple(
        dataclasses.replace(g, **{k: v for k, v in values.items() if k in _field_names(g)})
        for g in groups
    )


def _field_names(group: Any) -> set[str]:
    return {f.name for f in fields(group)}


# -- types ------------------------------------------------------------------------------


def base_type(tp: Any) -> type:
    """`int | None` -> int; `dict` -> dict (annotations may be strings)."""
    if isinstance(tp, str):
        tp = eval(tp, vars(typing) | {"dict": dict})  # resolve `from __future__` annotations
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return typing.get_origin(tp) or tp


def field_type(group: type | Any, name: str) -> type:
    return base_type(group.__dataclass_fields__[name].type)


def _parse_bool(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_KINDS = {bool: "true/false", int: "an integer", float: "a number", dict: "a JSON object"}


def coerce(name: str, tp: type, value: Any) -> Any:
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
        kind = _KINDS.get(tp, tp.__name__)
        raise UserError(f"{name}: expected {kind}, got {value!r}") from None
    return value


def message(err: Exception) -> str:
    """An error's text; a KeyError's str() quotes its message, so take it bare."""
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err)
