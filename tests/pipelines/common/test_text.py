from pipelines.common.text import count, duration, plural


def test_numbers_and_words_agree():
    assert (count(1, "epoch"), count(1_200, "output")) == ("1 epoch", "1,200 outputs")
    assert (count(1, "entry", "entries"), count(3, "entry", "entries")) == ("1 entry", "3 entries")
    assert (plural(1, "is", "are"), plural(0, "is", "are"), plural(0.5, "GPU", "GPUs")) == (
        "is",
        "are",
        "GPUs",
    )


def test_durations_are_hours_minutes_seconds():
    assert (duration(131.4), duration(3_725)) == ("0:02:11", "1:02:05")
