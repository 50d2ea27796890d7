"""Wording shared by what the verbs print."""


def count(n: int, noun: str) -> str:
    """`1 epoch`, `2 epochs`, `1,200 outputs`: a number and its noun, in agreement."""
    return f"{n:,} {noun}{'s' * (n != 1)}"
