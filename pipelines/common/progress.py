"""Progress of a long Ray Data job: Ray Data's bars on a terminal, a line of ours in a log.

In a log file (a scheduled job, `nohup`) Ray Data prints a block of lines every ten
seconds, without a rate or a time left; there, `ProgressLine` replaces it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pipelines.common.text import count, duration

PROGRESS_EVERY_S = 30.0  # a progress line this often when the output is a log


class ProgressLine:
    """How far, how fast, how long still: a line every `every_s`.

    The rate counts from the first results on, so the start-up does not skew the time
    left. The last results print nothing: the verb's summary line reports them.
    """

    def __init__(self, total: int, every_s: float, action: str, noun: str) -> None:
        self.total, self.every_s, self.action, self.noun = total, every_s, action, noun
        self.printed = time.monotonic()
        self.first: tuple[float, int] | None = None  # (when, how many) at the first results

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = (now, done)
        if done >= self.total or now - self.printed < self.every_s:
            return
        self.printed = now
        share = f"({done / self.total:.0%})"
        line = f"{self.action} {done:,} of {count(self.total, self.noun)} {share}"
        since, before = self.first
        if done > before and now > since:
            rate = (done - before) / (now - since)
            line += f"; {rate:.1f} {self.noun}s/s; ETA {duration((self.total - done) / rate)}"
        print(line, flush=True)


def progress_for_logs(ds: Any, total: int, action: str, noun: str) -> ProgressLine | None:
    """A ProgressLine for the Ray Dataset `ds` when stdout is no terminal, else None.

    Turns Ray Data's progress display off for `ds` then, and its warning that says so.
    """
    if sys.stdout.isatty():
        return None
    ds.context.enable_progress_bars = False
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    return ProgressLine(total, PROGRESS_EVERY_S, action, noun)
