"""A package's exported names, each loaded from its module on first use (PEP 562).

A package `__init__` that imports its modules makes every process that imports any one of
them pay for all of them: a Ray task that only decodes images would import torch, MLflow
and Ray Train (seconds of CPU each) through its package. With

    __getattr__, __dir__ = lazy_exports(__name__, {"job": ("run", "prepare"), ...})

`package.run` imports `package.job` when first used, and is a plain attribute after.
Type checkers read the names from an `if TYPE_CHECKING:` block of the same imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, names_of: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose names `names_of` lists by the
    module (relative to the package) that defines them."""
    module_of = {name: module for module, names in names_of.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)
        setattr(sys.modules[package], name, value)  # once loaded, a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *module_of})

    __getattr__.names = frozenset(module_of)  # what it can load (tests check __all__ by it)
    return __getattr__, __dir__
