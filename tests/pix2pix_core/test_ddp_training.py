"""Pix2Pix.parallelize with DistributedDataParallel: two gloo processes on the CPU."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from pix2pix_core.training import PairedDiscriminator

from .helpers import image_pair, tiny_model

WORLD_SIZE = 2
STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_flat(tensors) -> list[torch.Tensor]:
    flat = torch.cat([t.detach().flatten().float() for t in tensors])
    out = [torch.empty_like(flat) for _ in range(WORLD_SIZE)]
    dist.all_gather(out, flat)
    return out


def _worker(rank: int, port: int, results: dict, training: dict) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        # Different seeds: DDP must broadcast rank 0's initial weights itself.
        model = tiny_model(seed=rank, norm="batch", **training)
        model.parallelize(lambda module: DistributedDataParallel(module))
        losses = []
        for step in range(STEPS):
            a, b = image_pair(batch=2, seed=100 * rank + step)  # each rank its own shard
            losses.append(model.train_step(a, b))
        model.sync_buffers()
        g_params = _gather_flat(model.generator_module.parameters())
        d_params = _gather_flat(model.discriminator_module.parameters())
        buffers = _gather_flat(b for b in model.generator_module.buffers() if b.is_floating_point())
        results[rank] = {
            "wrapped": isinstance(model.netG, DistributedDataParallel)
            and isinstance(model.netD.module, PairedDiscriminator),
            "g_equal": torch.equal(g_params[0], g_params[1]),
            "d_equal": torch.equal(d_params[0], d_params[1]),
            "buffers_equal": torch.equal(buffers[0], buffers[1]),
            "losses": losses,
            "has_batchnorm": any(
                isinstance(m, torch.nn.BatchNorm2d) for m in model.generator_module.modules()
            ),
        }
    finally:
        dist.destroy_process_group()


# wgangp with its penalty: the penalty's gradients come from a pass of the bare discriminator,
# and must still be averaged across ranks by the wrapper's hooks (else the D's would drift).
@pytest.mark.parametrize("training", [{}, {"gan_mode": "wgangp", "lambda_gp": 10.0}], ids=str)
def test_ddp_training_keeps_ranks_identical(training):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(_free_port(), results, training), nprocs=WORLD_SIZE, join=True)
        results = dict(results)
    assert sorted(results) == [0, 1]
    for rank, result in results.items():
        assert result["wrapped"], rank
        assert result["has_batchnorm"], rank
        assert result["g_equal"] and result["d_equal"], rank
        assert result["buffers_equal"], rank
        assert len(result["losses"]) == STEPS
    # The ranks saw different data, so their local losses differ.
    assert results[0]["losses"][0] != results[1]["losses"][0]
