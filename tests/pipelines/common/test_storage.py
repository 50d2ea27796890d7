import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.common.errors import UserError
from pipelines.common.storage import Location, parse_storage_options
from tests.cli_process import ROOT, run_cli, run_python


def test_local_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loc = Location.parse("./runs/x")
    assert loc.url == str(tmp_path / "runs" / "x")
    assert Location.parse(f"file://{tmp_path}/y").url == str(tmp_path / "y")


def test_write_read_roundtrip_local(tmp_path):
    loc = Location.parse(str(tmp_path)).join("a", "b.json")
    loc.write_json({"x": 1})
    assert loc.exists()
    assert loc.read_json() == {"x": 1}
    assert loc.relative_to(Location.parse(str(tmp_path))) == "a/b.json"


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_partial_one(tmp_path):
    loc = Location.parse(str(tmp_path)).join("m.jsonl")
    loc.write_bytes(b"old\n")
    with pytest.raises(RuntimeError, match="midway"), loc.open_write() as f:
        f.write(b"new, in part\n")
        raise RuntimeError("midway")
    assert loc.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["m.jsonl"]
    with loc.open_write() as f:
        f.write(b"new ")
        f.write(b"whole\n")
    assert loc.read_bytes() == b"new whole\n"


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Location.parse(str(tmp_path / "nope")).read_bytes()


def test_storage_options_must_be_a_json_object():
    assert parse_storage_options('{"anon": true}') == {"anon": True}
    with pytest.raises(UserError, match="not valid JSON"):
        parse_storage_options("{anon")
    with pytest.raises(UserError, match="JSON object"):
        parse_storage_options("[1]")


@pytest.mark.s3
def test_s3_fsspec_and_pyarrow_see_the_same_objects(s3_store):
    root = s3_store.location()
    root.join("hello.txt").write_bytes(b"hi")
    assert root.join("hello.txt").read_bytes() == b"hi"
    # pyarrow needs the endpoint passed on explicitly: write with pyarrow, read with fsspec.
    table = pa.table({"x": [1, 2, 3]})
    pq.write_table(table, root.join("t.parquet").path, filesystem=root.arrow_fs)
    with root.fs.open(root.join("t.parquet").path, "rb") as f:
        assert pq.read_table(f).column("x").to_pylist() == [1, 2, 3]


@pytest.mark.s3
def test_an_object_written_in_parts_appears_whole_or_not_at_all(s3_store):
    loc = s3_store.location().join("streamed.jsonl")
    loc.write_bytes(b"old\n")
    with pytest.raises(RuntimeError, match="midway"), loc.open_write() as f:
        f.write(b"new, in part\n")
        raise RuntimeError("midway")
    assert loc.read_bytes() == b"old\n"
    with loc.open_write() as f:
        f.write(b"new ")
        f.write(b"whole\n")
    assert loc.read_bytes() == b"new whole\n"


@pytest.mark.s3
def test_s3_options_override_environment(s3_store, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    loc = Location.parse(f"s3://{s3_store.bucket}/opts/x.txt", s3_store.options)
    loc.write_bytes(b"x")
    assert loc.arrow_fs.get_file_info(loc.path).size == 1


def test_storage_access_problems_are_explained_without_a_trace(s3_store, tmp_path):
    no_aws = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    no_aws |= {"HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}  # no ~/.aws either
    src = f"s3://{s3_store.bucket}/no-such-folder"

    done = run_cli("prepare", src, str(tmp_path / "out"), env=no_aws, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "error: no credentials for the object store: set AWS_ACCESS_KEY_ID" in done.stderr
    assert "Traceback" not in done.stderr

    wrong_key = json.dumps({"endpoint_url": s3_store.endpoint_url, "key": "x", "secret": "y"})
    done = run_cli("prepare", src, str(tmp_path / "out"), "--storage_options", wrong_key,
                   env=no_aws, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"error: no permission to read {src}" in done.stderr
    assert "Traceback" not in done.stderr

    closed_port = json.dumps({"endpoint_url": "http://127.0.0.1:9", "key": "x", "secret": "y"})
    done = run_cli("prepare", src, str(tmp_path / "out"), "--storage_options", closed_port,
                   env=no_aws, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "error: cannot reach the object store" in done.stderr
    assert "Traceback" not in done.stderr


# Each verb that touches storage, with keys the store refuses: the message names the flag,
# the URL and the cause in one line, exit 2, and comes before Ray starts or MLflow is asked.
# verb: (the flag its message names, its arguments)
VERBS = {
    "train": ("--data", ["--data", "{s3}/prepared", "--storage_path", "{s3}/runs"]),
    "tune": ("--data", ["--data", "{s3}/prepared", "--storage_path", "{s3}/runs"]),
    "evaluate": ("--data", ["--model", "{s3}/g.pt", "--data", "{s3}/prepared"]),
    "register": ("--checkpoint", ["--name", "m", "--checkpoint", "{s3}/g.pt"]),
    "promote": ("--data", ["--name", "m", "--candidate", "1", "--data", "{s3}/prepared"]),
    "retrain": ("source", ["--config", "{config}"]),  # the config names the storage
}
EACH_VERB = """
import contextlib, io, json, sys
import ray
from pipelines.cli import main
results = {}
for verb, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    results[verb] = {"rc": rc, "stderr": err.getvalue(), "ray": ray.is_initialized()}
print(json.dumps(results))
"""


@pytest.mark.s3
def test_every_verb_names_the_url_it_cannot_read_before_any_work(s3_store, tmp_path):
    s3 = f"s3://{s3_store.bucket}/denied"
    wrong_keys = json.dumps({"endpoint_url": s3_store.endpoint_url, "key": "x", "secret": "y"})
    config = tmp_path / "retrain.yaml"
    config.write_text(
        f"source: {s3}/raw\nname: m\nstorage_path: {s3}/runs\nstorage_options: '{wrong_keys}'\n"
    )
    common = ["--storage_options", wrong_keys, "--tracking_uri", f"sqlite:///{tmp_path}/m.db"]
    argvs = {
        verb: [verb, *(a.format(s3=s3, config=config) for a in args)]
        + (common if verb != "retrain" else [])
        for verb, (_, args) in VERBS.items()
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = run_python(EACH_VERB, json.dumps(argvs), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(results) == set(VERBS)
    for verb, result in results.items():
        lines = result["stderr"].strip().splitlines()
        assert result["rc"] == 2 and len(lines) == 1, (verb, result)
        flag = VERBS[verb][0]
        assert lines[0].startswith(f"pix2pix {verb}: error: {flag} {s3}/"), lines
        assert "no permission" in lines[0] or "denied" in lines[0].lower(), lines
        assert not result["ray"], f"{verb} started Ray before failing"
