"""Wording shared by what the verbs print."""


def plural(n: float, one: str, many: str) -> str:
    """The word that agrees with `n`: `plural(n, "is", "are")`."""
    return one if n == 1 else many


def count(n: int, noun: str, nouns: str | None = None) -> str:
    """`1 epoch`, `2 epochs`, `1,200 outputs`, `3 entries`: a number and its noun, in
    agreement (`nouns` where adding an s is wrong)."""
    return f"{n:,} {plural(n, noun, nouns or noun + 's')}"


def duration(seconds: float) -> str:
    """`0:02:05`: hours, minutes, seconds."""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
