"""Wording shared by what the verbs print."""


def count(n: int, noun: str) -> str:
    """`1 epoch`, `2 epochs`, `1,200 outputs`: a number and its noun, in agreement."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


def duration(seconds: float) -> str:
    """`0:02:05`: hours, minutes, seconds."""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
