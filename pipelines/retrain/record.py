"""The retrain run's own record: `RUN_FOLDER/retrain.json` and its MLflow parent run.

The two point at each other: the parent run carries the tag `pix2pix.run_folder` (the
folder's URL), and `retrain.json` records the parent run of every invocation.

One invocation is one MLflow parent run. A rerun after a crash or a failure is the same
invocation, so it reuses the parent run that the unfinished invocation opened (the
training run it resumes is that run's child); a run after a finished one (the next
night's) opens a new parent run.

    retrain.json
      run_name, run_folder, source
      invocations: [{parent_run_id, experiment_id, tracking_uri, status, attempts,
                     started_at, finished_at, steps: {step: ran | skipped}, summary}]
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient

from pipelines.common.names import File, Tag
from pipelines.common.storage import Location
from pipelines.common.tracking import open_run


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RetrainRecord:
    """`retrain.json` of one run folder, and the MLflow parent run of the invocation."""

    def __init__(self, run_dir: Location, *, tracking_uri: str, experiment: str):
        self.run_dir = run_dir
        self.location = run_dir.join(File.RETRAIN_RECORD)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.data: dict[str, Any] = self.location.read_json() if self.location.exists() else {}
        self.invocation: dict[str, Any] = {}

    @property
    def parent_run_id(self) -> str:
        return self.invocation["parent_run_id"]

    def open(self, run_name: str, source: str, params: Mapping[str, Any]) -> str:
        """Continue the unfinished invocation or start one; returns its parent run id."""
        invocations = self.data.setdefault("invocations", [])
        last = invocations[-1] if invocations else None
        unfinished = (
            last and last.get("status") != "done" and last.get("tracking_uri") == self.tracking_uri
        )
        tracked = open_run(
            self.tracking_uri,
            self.experiment,
            run_name,
            params=params,
            tags={
                Tag.VERB: "retrain",
                Tag.RUN_FOLDER: self.run_dir.url,
                Tag.RUN_RECORD: self.location.url,
                Tag.SOURCE: source,
            },
            resume_run_id=last["parent_run_id"] if unfinished else None,
        )
        if tracked.resumed:
            last.update(status="running", attempts=last.get("attempts", 1) + 1)
            last.update(finished_at=None, summary=None)
            self.invocation = last
        else:
            self.invocation = {
                "parent_run_id": tracked.run_id,
                "experiment_id": tracked.experiment_id,
                "tracking_uri": self.tracking_uri,
                "status": "running",
                "attempts": 1,
                "started_at": _now(),
                "finished_at": None,
                "steps": {},
                "summary": None,
            }
            invocations.append(self.invocation)
        self._write(run_name, source)
        return self.parent_run_id

    def step(self, name: str, outcome: str) -> None:
        """Note a step's outcome (ran | skipped) in the record and on the parent run."""
        self.invocation["steps"][name] = outcome
        self.location.write_json(self.data)
        client = MlflowClient(self.tracking_uri)
        client.set_tag(self.parent_run_id, f"{Tag.STEP_PREFIX}{name}", outcome)

    def close(self, status: str, summary: str) -> None:
        """End the invocation: `done` or `failed`, with its one-line summary."""
        client = MlflowClient(self.tracking_uri)
        client.set_tag(self.parent_run_id, Tag.SUMMARY, summary[:5000])
        status_name = "FINISHED" if status == "done" else "FAILED"
        client.set_terminated(self.parent_run_id, status=status_name)
        self.invocation.update(status=status, finished_at=_now(), summary=summary)
        self.location.write_json(self.data)

    def _write(self, run_name: str, source: str) -> None:
        self.data.update(run_name=run_name, run_folder=self.run_dir.url, source=source)
        self.run_dir.makedirs()
        self.location.write_json(self.data)
