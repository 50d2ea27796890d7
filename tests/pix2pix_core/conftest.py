"""Core tests use tiny tensors: one intra-op thread is as fast as two for them and does not
collapse when the machine is shared with Ray workers and other test processes."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_intra_op_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
