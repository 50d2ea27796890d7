"""The durable step runner: skip, rerun, continue after a failure; on disk and on S3."""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass

import pytest

from pipelines.common.errors import UserError
from pipelines.common.storage import Location
from pipelines.retrain.runner import StepRunner, fingerprint, fingerprint_files
from tests.cli_process import run_python


@pytest.fixture(params=["local", "s3"])
def run_dir(request, tmp_path) -> Location:
    if request.param == "local":
        return Location.parse(str(tmp_path / "run"))
    return request.getfixturevalue("s3_store").location()


class Pipeline:
    """Three steps, a -> b -> c, that count their calls; b can be made to fail."""

    def __init__(self, run_dir: Location):
        self.logs: list[str] = []
        self.runner = StepRunner(run_dir, log=self.logs.append)
        self.calls: Counter[str] = Counter()
        self.fail_in: str | None = None

    def step(self, name: str, value: int) -> dict:
        self.calls[name] += 1
        if self.fail_in == name:
            raise RuntimeError(f"{name} broke")
        return {"outputs": {"data": f"s3://bucket/{name}"}, "metrics": {"value": value}}

    def run(self, source: str = "v1", lr: float = 0.1) -> dict:
        r = self.runner
        a = r.run("a", {"source": source}, lambda: self.step("a", 1))
        b = r.run(
            "b", {"data": a["outputs"]["data"], "lr": lr}, lambda: self.step("b", 2), after=["a"]
        )
        return r.run("c", {"data": b["outputs"]["data"]}, lambda: self.step("c", 3), after=["b"])


def test_done_steps_are_skipped_when_inputs_are_unchanged(run_dir):
    first = Pipeline(run_dir)
    result = first.run()
    assert first.calls == {"a": 1, "b": 1, "c": 1}
    assert first.logs[-1].startswith("[step c] done in ")

    again = Pipeline(run_dir)
    assert again.run() == result == {"outputs": {"data": "s3://bucket/c"}, "metrics": {"value": 3}}
    assert again.calls == {}
    assert again.logs == [f"[step {s}] skipped (unchanged inputs)" for s in "abc"]

    record = again.runner.record("b")
    assert record["status"] == "done"
    assert record["attempt"] == 1
    assert record["result"]["outputs"] == {"data": "s3://bucket/b"}
    assert set(record["inputs"]) == {"data", "lr"}
    assert record["after"] == {"a": again.runner.record("a")["fingerprint"]}
    assert record["duration_s"] >= 0 and record["started_at"] <= record["finished_at"]
    assert record["error"] is None


def test_changed_inputs_rerun_the_step_and_those_after_it(run_dir):
    Pipeline(run_dir).run()

    changed_lr = Pipeline(run_dir)
    changed_lr.run(lr=0.2)
    assert changed_lr.calls == {"b": 1, "c": 1}
    assert "[step b] running (inputs changed: lr)" in changed_lr.logs

    # New source data: `a` reruns with the same output URL, and `b` and `c` still rerun
    # because they run after it.
    new_data = Pipeline(run_dir)
    new_data.run(source="v2", lr=0.2)
    assert new_data.calls == {"a": 1, "b": 1, "c": 1}
    assert "[step b] running (inputs changed: after a)" in new_data.logs


def test_a_rerun_after_a_failure_continues_at_the_failed_step(run_dir):
    crashed = Pipeline(run_dir)
    crashed.fail_in = "b"
    with pytest.raises(RuntimeError, match="b broke"):
        crashed.run()
    assert crashed.calls == {"a": 1, "b": 1}
    assert crashed.logs[-1].startswith("[step b] failed after ")
    failed = crashed.runner.record("b")
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "RuntimeError"
    assert failed["error"]["message"] == "b broke"
    assert "b broke" in failed["error"]["traceback"]
    assert crashed.runner.record("c") is None

    resumed = Pipeline(run_dir)
    resumed.run()
    assert resumed.calls == {"b": 1, "c": 1}  # `a` finished before the crash: not repeated
    assert resumed.logs[0] == "[step a] skipped (unchanged inputs)"
    assert resumed.logs[1].startswith("[step b] running (again: last attempt failed with Runtime")
    assert resumed.runner.record("b")["status"] == "done"
    assert resumed.runner.record("b")["attempt"] == 2


def test_a_step_killed_mid_way_runs_again(tmp_path):
    """A hard kill leaves the record at `running`; the next run does the step again."""
    run_dir = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os
        from pipelines.retrain.runner import StepRunner
        from pipelines.common.storage import Location
        runner = StepRunner(Location.parse({str(run_dir)!r}))
        runner.run("a", {{}}, lambda: {{"ok": True}})
        runner.run("b", {{}}, lambda: os._exit(9))
        """
    )
    killed = run_python(script, timeout=120)
    assert killed.returncode == 9, killed.stderr

    logs: list[str] = []
    runner = StepRunner(Location.parse(str(run_dir)), log=logs.append)
    assert runner.record("b")["status"] == "running"
    runner.run("a", {}, lambda: pytest.fail("a was done"))
    assert runner.run("b", {}, lambda: {"ok": 2}) == {"ok": 2}
    assert logs == [
        "[step a] skipped (unchanged inputs)",
        "[step b] running (again: last attempt did not finish)",
        logs[-1],
    ]
    assert logs[-1].startswith("[step b] done in ")


def test_results_must_be_dicts_and_step_names_plain(tmp_path):
    runner = StepRunner(Location.parse(str(tmp_path)), log=lambda _: None)
    with pytest.raises(TypeError, match="must return a dict, got list"):
        runner.run("bad", {}, lambda: [1, 2])
    assert runner.record("bad")["status"] == "failed"
    with pytest.raises(ValueError, match="step name"):
        runner.run("../escape", {}, dict)
    with pytest.raises(RuntimeError, match="runs after 'missing', which is not done"):
        runner.run("late", {}, dict, after=["missing"])


@dataclass(frozen=True)
class _Opts:
    lr: float
    norm: str


def test_fingerprint_is_canonical_and_takes_configs_and_locations():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint(_Opts(lr=0.1, norm="batch")) == fingerprint({"lr": 0.1, "norm": "batch"})
    assert fingerprint(_Opts(lr=0.1, norm="batch")) != fingerprint(_Opts(lr=0.2, norm="batch"))
    # Credentials in the options do not change what the data is.
    assert fingerprint(Location("s3://b/x", {"key": "k1"})) == fingerprint(
        Location("s3://b/x", {"key": "k2"})
    )
    with pytest.raises(TypeError, match="cannot fingerprint a object"):
        fingerprint(object())


@pytest.mark.parametrize("where", ["local", "s3"])
def test_fingerprint_files_changes_with_the_data(where, request, tmp_path):
    if where == "local":
        root = Location.parse(str(tmp_path / "data"))
    else:
        root = request.getfixturevalue("s3_store").location()
    root.join("train", "1.jpg").write_bytes(b"one")
    root.join("train", "2.jpg").write_bytes(b"two")
    before = fingerprint_files(root)
    assert fingerprint_files(root) == before

    root.join("train", "2.jpg").write_bytes(b"TWO!")
    changed = fingerprint_files(root)
    assert changed != before
    root.join("train", "3.jpg").write_bytes(b"three")
    assert fingerprint_files(root) != changed

    with pytest.raises(UserError, match="no files found"):
        fingerprint_files(root.join("nothing-here"))
