"""Option groups as flags and as a flat YAML: `--config FILE` first, the flags given over it.

parser = argparse.ArgumentParser()
add_options(parser, ArchitectureOptions, StorageOptions)
args = parser.parse_args()
architecture, storage = load_options(args, ArchitectureOptions, StorageOptions)
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from dataclasses import fields
from typing import Any

import yaml

from pipelines.common.errors import UserError
from pipelines.common.storage import Location
from pipelines.config.fields import base_type, coerce, message


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


def group_title(cls: type) -> str | None:
    """An option group's title in --help: the first line of its docstring."""
    return cls.__doc__.strip().splitlines()[0].rstrip(".") if cls.__doc__ else None


def add_options(
    parser: argparse.ArgumentParser, *classes: type, exclude: frozenset[str] = frozenset()
) -> None:
    """Add one `--name` flag per field of each option group (and `--config`).

    `exclude`: fields that are no flag of this verb (still YAML keys, which the verb checks).
    """
    if not any(a.dest == "config" for a in parser._actions):
        parser.add_argument(
            "--config", metavar="FILE", help="YAML file of options (flags override it)"
        )
    for cls in classes:
        group = parser.add_argument_group(group_title(cls))
        for f in fields(cls):
            if f.name in exclude or any(a.dest == f.name for a in parser._actions):
                continue
            tp = base_type(f.type)
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


def read_yaml(url: str) -> dict[str, Any]:
    """A flat YAML mapping of option names to values, from any storage URL."""
    try:
        values = yaml.safe_load(Location.parse(url).read_bytes())
    except yaml.YAMLError as err:
        raise UserError(f"{url}: not valid YAML: {err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{url}: expected a mapping of option: value, got {type(values).__name__}")
    return values


def load_options(
    args: argparse.Namespace, *classes: type, extra_keys: frozenset[str] = frozenset()
) -> tuple:
    """Build each option group from `--config` YAML, then the flags given.

    An unknown YAML key or a bad value is a UserError that names it. `extra_keys` are
    YAML keys a verb reads itself.
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
                values[f.name] = coerce(f"--{f.name}", base_type(f.type), given[f.name])
            elif f.name in from_yaml:
                values[f.name] = coerce(f.name, base_type(f.type), from_yaml[f.name])
        built.append(build(cls, **values))
    return tuple(built)


def given(args: argparse.Namespace, cls: type) -> bool:
    """Whether any flag of option group `cls` was given on the command line."""
    return any(f.name in vars(args) for f in fields(cls))


def build(cls: type, **values: Any) -> Any:
    """An option group (or a pix2pix_core config) from values; a bad one is a UserError."""
    try:
        return cls(**values)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(message(err)) from None
