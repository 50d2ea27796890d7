"""native_bf16: bf16 autocast only where the hardware computes bf16; flush_denormals."""

import ast
import textwrap
from pathlib import Path

import pytest
import torch

from pix2pix_core.precision import native_bf16
from tests.cli_process import run_python

CPUINFO = Path("/proc/cpuinfo")
ROOT = Path(__file__).parents[2]


@pytest.mark.skipif(not CPUINFO.exists(), reason="reads the CPU flags from /proc/cpuinfo")
def test_cpu_has_native_bf16_exactly_when_it_has_avx512_bf16_or_amx():
    flags = set()
    for line in CPUINFO.read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    assert native_bf16("cpu") == bool(flags & {"avx512_bf16", "amx_tile"})
    assert native_bf16(torch.device("cpu")) == native_bf16("cpu")


def test_cuda_without_a_gpu_and_other_devices_are_not_native():
    if not torch.cuda.is_available():
        assert not native_bf16("cuda")
    assert not native_bf16("meta")


def test_flushed_denormals_reach_the_threads_torch_starts_after_and_no_other_thread():
    """In a fresh process: a subnormal float32 (1e-39) times 3 is 0 in a thread that
    flushed denormals, also in the intra-op threads torch splits 2**20 elements over, and
    not in the main thread."""
    probe = textwrap.dedent(
        """
        import threading
        import torch
        from pix2pix_core.precision import flush_denormals

        torch.set_num_threads(2)
        x = torch.full((1 << 20,), 1e-39)
        found = {"before": int((x * 3).count_nonzero())}

        def model_thread():
            found["supported"] = flush_denormals()
            found["flushed"] = int((x * 3).count_nonzero())

        thread = threading.Thread(target=model_thread)
        thread.start()
        thread.join()
        found["main thread"] = int((x * 3).count_nonzero())
        print(found)
        """
    )
    done = run_python(probe)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    found = ast.literal_eval(out.strip())
    if not found["supported"]:
        pytest.skip("this CPU cannot flush denormals")
    assert found == {"before": 1 << 20, "supported": True, "flushed": 0, "main thread": 1 << 20}
