"""Durable steps: what lets `pix2pix retrain` continue where it stopped.

Ray Workflows is gone from Ray, and a retraining run needs little of it: each step's
outcome is a small JSON record in the run's folder, and a step whose record says `done`
for the same inputs is not run again.

    runner = StepRunner(run_dir)
    prep = runner.run("prepare", {"source": fingerprint_files(src), "opts": prep_opts},
                      lambda: prepare(...))                       # -> {"outputs": {...}}
    train = runner.run("train", {"opts": model_opts}, lambda: train(prep["outputs"]["data"]),
                       after=["prepare"])

`run_dir/<name>/step.json` records the step: status (running | done | failed), the
fingerprint of its inputs (one per input and one for all), what `fn` returned (by
convention `outputs`: name -> URL and `metrics`: name -> number), start and end times,
the duration and, for a failure, the error. A rerun skips a done step with unchanged
inputs, reruns one whose inputs changed, and runs again one that failed or was killed
mid-way (its record still says `running`), so a crashed run continues at the step that
did not finish.

`after` names upstream steps: their input fingerprints join this step's, so a step whose
upstream ran on new inputs runs again even when the upstream's output URLs did not change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pipelines.common.errors import UserError
from pipelines.common.listing import LISTING_SCHEMA, list_table
from pipelines.common.names import File
from pipelines.common.storage import Location

RECORD_NAME = File.STEP_RECORD
_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The tail of a traceback is where the cause is; records stay small enough to read.
_MAX_TRACEBACK_CHARS = 20_000


def _log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StepRunner:
    """Runs named steps once per set of inputs, with their records under `run_dir`."""

    def __init__(self, run_dir: Location, *, log: Callable[[str], None] = _log_to_stderr):
        self.run_dir = run_dir
        self.log = log

    def step_dir(self, name: str) -> Location:
        """The step's folder: its `step.json`, and a place for the step's own outputs."""
        if not _STEP_NAME.match(name):
            raise ValueError(f"step name must be letters, digits, '_', '.', '-', got {name!r}")
        return self.run_dir.join(name)

    def record(self, name: str) -> dict[str, Any] | None:
        """The step's last record, or None if it never started."""
        location = self.step_dir(name).join(RECORD_NAME)
        return location.read_json() if location.exists() else None

    def run(
        self,
        name: str,
        inputs: Mapping[str, Any],
        fn: Callable[[], Mapping[str, Any]],
        *,
        after: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Run `fn` unless this step is done for the same inputs; returns what `fn` returned.

        `inputs` are JSON-like values (dataclasses, Locations and paths are accepted) that
        decide whether the step must run; `fn` returns a JSON-serialisable dict. A failure
        is recorded and re-raised.
        """
        record_location = self.step_dir(name).join(RECORD_NAME)
        input_fingerprints = {key: fingerprint(value) for key, value in inputs.items()}
        upstream = {step: self._done_fingerprint(step, name) for step in after}
        combined = fingerprint({"inputs": input_fingerprints, "after": upstream})

        previous = self._previous(name, record_location)
        if (
            previous
            and previous.get("status") == "done"
            and previous.get("fingerprint") == combined
        ):
            self.log(f"[step {name}] skipped (unchanged inputs)")
            return previous["result"]
        self.log(f"[step {name}] running{_why(previous, input_fingerprints, upstream)}")

        record: dict[str, Any] = {
            "name": name,
            "status": "running",
            "fingerprint": combined,
            "inputs": input_fingerprints,
            "after": upstream,
            "attempt": (previous or {}).get("attempt", 0) + 1,
            "started_at": _now(),
            "finished_at": None,
            "duration_s": None,
            "result": None,
            "error": None,
        }
        record_location.write_json(record)
        started = time.perf_counter()
        try:
            result = fn()
            if not isinstance(result, Mapping):
                raise TypeError(f"step {name!r} must return a dict, got {type(result).__name__}")
            # A round trip through JSON: a first run returns exactly what a skip will.
            result = json.loads(json.dumps(dict(result), default=_json_default))
        except BaseException as err:  # KeyboardInterrupt too: the record says what stopped
            record.update(
                status="failed",
                error={
                    "type": type(err).__name__,
                    "message": str(err),
                    "traceback": traceback.format_exc()[-_MAX_TRACEBACK_CHARS:],
                },
                **_finish(started),
            )
            try:
                record_location.write_json(record)
            except Exception as write_err:
                err.add_note(f"and its failure could not be recorded: {write_err}")
            self.log(f"[step {name}] failed after {record['duration_s']:.1f} s: {_brief(err)}")
            raise
        record.update(status="done", result=result, **_finish(started))
        record_location.write_json(record)
        self.log(f"[step {name}] done in {record['duration_s']:.1f} s")
        return result

    def _previous(self, name: str, location: Location) -> dict[str, Any] | None:
        if not location.exists():
            return None
        try:
            return location.read_json()
        except json.JSONDecodeError:
            # Writes are atomic, so this is a hand-edited file: run the step again.
            self.log(f"[step {name}] {location.url} is not valid JSON; running the step again")
            return None

    def _done_fingerprint(self, upstream: str, name: str) -> str:
        record = self.record(upstream)
        if not record or record.get("status") != "done":
            raise RuntimeError(f"step {name!r} runs after {upstream!r}, which is not done")
        return record["fingerprint"]


def _why(previous: dict[str, Any] | None, inputs: dict[str, str], upstream: dict[str, str]) -> str:
    """Why a step runs, for the log line: first run, changed inputs, or an unfinished try."""
    if previous is None:
        return ""
    status = previous.get("status")
    if status == "failed":
        error = previous.get("error") or {}
        return f" (again: last attempt failed with {error.get('type')}: {error.get('message')})"
    if status == "running":
        return " (again: last attempt did not finish)"
    old_inputs, old_upstream = previous.get("inputs", {}), previous.get("after", {})
    changed = sorted(
        k for k in inputs.keys() | old_inputs.keys() if inputs.get(k) != old_inputs.get(k)
    )
    changed += sorted(
        f"after {k}"
        for k in upstream.keys() | old_upstream.keys()
        if upstream.get(k) != old_upstream.get(k)
    )
    return f" (inputs changed: {', '.join(changed)})"


def _brief(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _finish(started: float) -> dict[str, Any]:
    return {"finished_at": _now(), "duration_s": round(time.perf_counter() - started, 3)}


# --------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Location):
        # The URL only: options hold credentials, which may rotate without changing data.
        return value.url
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot fingerprint a {type(value).__name__}: {value!r}")


def fingerprint(value: Any) -> str:
    """SHA-256 of a value's canonical JSON (sorted keys), as 64 hex digits."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint_files(location: Location) -> str:
    """A fingerprint of every file under `location` (path, size, ETag or mtime).

    Cheap (a listing, no reads), so a scheduled run can tell unchanged data in seconds.
    """
    files = list_table(location)  # a fresh listing each time: data may be new
    if not files.num_rows:
        raise UserError(f"no files found at {location.url}")
    root = location.path.rstrip("/")
    listing = [
        [path.removeprefix(root).lstrip("/"), size, version]
        for path, size, version in zip(
            *(files[c].to_pylist() for c in LISTING_SCHEMA.names), strict=True
        )
    ]
    return fingerprint(listing)
