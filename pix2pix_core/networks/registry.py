"""A registry is a plain dict whose failed lookup names the valid keys."""

from __future__ import annotations

from typing import TypeVar

V = TypeVar("V")


class Registry(dict[str, V]):
    """``{name: builder}`` by the official flag values; ``registry["bad"]`` is a KeyError that
    lists the valid names instead of quoting the bad one alone."""

    def __init__(self, flag: str, entries: dict[str, V]) -> None:
        super().__init__(entries)
        self.flag = flag

    def __missing__(self, key: str) -> V:
        raise KeyError(f"unknown {self.flag} {key!r}; valid names: {', '.join(self)}")
