"""Validation's numbers do not depend on how it is run: the batch size, the number of
workers (two gloo processes here), or the order of the pairs."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipelines.demo.sample_data import encode, make_pairs
from pipelines.train.validation import validate
from pix2pix_core import DiscriminatorConfig, GeneratorConfig, Pix2Pix

SIZE = 64  # a U-Net of depth 6: its innermost level but one has the paper's dropout


def _model() -> Pix2Pix:
    generator = GeneratorConfig(num_downs=6, ngf=8)
    return Pix2Pix(generator, DiscriminatorConfig(ndf=8), seed=0)


def _pairs() -> list[tuple[str, bytes, bytes]]:
    pairs = make_pairs(7, size=SIZE + 8, seed=2)  # 7: rank 0 gets 4 pairs, rank 1 gets 3
    return [(p.key, encode(p.a), encode(p.b)) for p in pairs]


def _validate(batch_size: int, eval_mode: bool, rank: int = 0, world: int = 1) -> dict:
    values, _ = validate(
        _model(),
        _pairs(),
        crop_size=SIZE,
        batch_size=batch_size,
        eval_mode=eval_mode,
        rank=rank,
        world=world,
        grid_size=0,
    )
    return values


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, results: dict, eval_mode: bool) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        results[rank] = _validate(batch_size=2, eval_mode=eval_mode, rank=rank, world=2)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("eval_mode", [False, True], ids=["paper", "eval"])
def test_the_metrics_are_the_same_at_any_batch_size_and_on_any_number_of_workers(eval_mode):
    one_by_one = _validate(batch_size=1, eval_mode=eval_mode)
    assert _validate(batch_size=4, eval_mode=eval_mode) == pytest.approx(one_by_one, rel=1e-5)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(_free_port(), results, eval_mode), nprocs=2, join=True)
        on_two = dict(results)
    # Every rank holds the reduced metrics of the whole split.
    assert on_two[0] == pytest.approx(on_two[1], rel=1e-6)
    assert on_two[0] == pytest.approx(one_by_one, rel=1e-5)


def test_the_papers_validation_is_not_eval_modes():
    """The two semantics give other numbers (dropout on and each image's own batch-norm
    statistics, against neither), so the agreement above is each semantics' own."""
    assert _validate(batch_size=4, eval_mode=False) != pytest.approx(
        _validate(batch_size=4, eval_mode=True), rel=1e-3
    )
