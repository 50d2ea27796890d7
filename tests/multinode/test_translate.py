"""`pix2pix translate` across nodes: model actors on every worker node; one node lost.

An actor on node_c translates its batch, writes the outputs and the batch's manifest part,
and its node is removed before Ray has the result: Ray runs the batch again on an actor
elsewhere. Every input must end written or failed exactly once (the manifest's counting
rule), and the rerun must find nothing left to do.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipelines.common.names import File
from pipelines.demo.sample_data import encode
from pix2pix_core import build_generator, save_generator
from tests.multinode import faults
from tests.multinode.conftest import finish, run_driver, wait_for_file
from tests.multinode.test_prepare import WITH_FAULT
from tests.tiny import CROP, GENERATOR

pytestmark = [pytest.mark.slow, pytest.mark.s3]

IMAGES = 16

TRANSLATE = """
import ray.data
from pipelines.translate import TranslateOptions, translate
# Ray Data hands batches to the first actor that is ready: on the 2 busy cores an actor on
# a slow node could start after the others had done every batch. Waiting for the whole pool
# gives each node's actor its first batch (Ray Data spreads the actors over the nodes).
ray.data.DataContext.get_current().wait_for_min_actors_s = 300
opts = TranslateOptions(
    model={model!r}, input={src!r}, output={dst!r}, batch_size=2, num_actors=3
)
summary = translate(opts)
emit({{"inputs": summary.inputs, "written": summary.written, "failed": summary.failed,
       "processed": summary.processed, "earlier": summary.earlier}})
"""


@pytest.fixture
def archive(s3_store, tmp_path):
    """IMAGES small photos in the object store, and a tiny generator (a file the driver
    reads: it ships the weights to the actors itself)."""
    src = s3_store.location("multinode/archive")
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        image = rng.integers(0, 256, (CROP, CROP, 3), dtype=np.uint8)
        src.join(f"img_{i:02d}.png").write_bytes(encode(image, "png"))
    torch.manual_seed(0)
    model = tmp_path / "generator.pt"
    net = build_generator(GENERATOR)
    model.write_bytes(save_generator(net, GENERATOR, {"eval_mode": True, "crop_size": CROP}))
    return src, model


def test_a_node_lost_mid_translate_leaves_every_input_done_once(
    cluster, archive, s3_store, mlflow_server, tmp_path
):
    src, model = archive
    dst = s3_store.location("multinode/translated")
    marker = tmp_path / "translate.pid"
    fault = {"target": "translate", "node_id": cluster.node_id("node_c"), "marker": str(marker)}
    job = TRANSLATE.format(model=str(model), src=src.url, dst=dst.url)
    env = cluster.driver_env(mlflow_server)
    driver = run_driver(WITH_FAULT.format(fault=fault) + job, env)
    wait_for_file(marker, driver)
    cluster.remove("node_c")
    summary, _ = finish(driver)

    # actors on every worker node; node_c's wrote its batch, then was lost
    assert {cluster.node_id(n) for n in ("node_a", "node_b")} | {fault["node_id"]} == set(
        faults.calls(marker)
    )
    # every input written once: the counts, the outputs, the manifest
    assert summary == {
        "inputs": IMAGES,
        "written": IMAGES,
        "failed": 0,
        "processed": summary["processed"],
        "earlier": 0,
    }
    assert summary["processed"] >= IMAGES  # the lost batch counts again when it reruns
    outputs = sorted(
        p.rsplit("/", 1)[-1] for p in dst.fs.ls(dst.path) if File.MANIFEST_DIR not in p
    )
    assert outputs == [f"img_{i:02d}.png" for i in range(IMAGES)]
    lines = dst.join(File.MANIFEST_DIR, File.MANIFEST).read_bytes().decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["input"] for r in records) == sorted(src.join(o).url for o in outputs)
    assert {r["status"] for r in records} == {"done"}

    # the rerun, a plain `translate` joining the cluster: nothing new to do
    again, _ = finish(run_driver(job, env))
    assert again == {**summary, "processed": 0, "earlier": IMAGES}
