"""What the retrain tests share: the step order, the tiny settings, the raw pairs, and
reading a step's record."""

from __future__ import annotations

from pipelines.common.names import File
from pipelines.common.storage import Location
from pipelines.demo.sample_data import make_pairs, write_dataset
from tests.tiny import CROP, TINY_EPOCHS, TINY_MODEL

STEPS = ("prepare", "train", "evaluate", "register", "promote")
TINY = {**TINY_MODEL, **TINY_EPOCHS, "load_size": CROP + 4, "crop_size": CROP}


def write_raw_pairs(root: Location) -> Location:
    """A dozen aligned A|B pairs (36 px) under `root`: 8 train, 2 val, 2 test."""
    pairs = make_pairs(12, size=36, seed=3)
    return write_dataset({"train": pairs[:8], "val": pairs[8:10], "test": pairs[10:]}, root)


def step_record(run_dir: Location, step: str) -> dict | None:
    """The step's `step.json` in a retrain run folder, None before the step has started."""
    loc = run_dir.join(step, File.STEP_RECORD)
    loc.fs.invalidate_cache()  # another process (the retrain) writes it
    return loc.read_json() if loc.exists() else None
