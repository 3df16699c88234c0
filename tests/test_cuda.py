"""CUDA-only checks (`tox -e gpu`): CUDA vs CPU agreement, TF32 and bf16 autocast, 16-bit memory, an AMP step.

Every test here carries the `cuda` marker and is skipped, with that reason, where no GPU is present.
"""

import math

import pytest
import torch

from sashimi.core.config import model_config
from sashimi.harness.verdict import assert_close
from sashimi.model.lm import SashimiLM
from sashimi.training import metrics
from tests import helpers
from tests.helpers import tokens

pytestmark = pytest.mark.cuda


def paired(seed: int = 0, **config):
    cpu = helpers.lm(seed, torch.float32, **config)
    gpu = helpers.lm(seed, torch.float32, **config).cuda()
    return cpu, gpu


def test_kernel_cuda_matches_cpu():
    layer = helpers.s4_layer(H=8, N2=32, n_ssm=1, seed=0, dtype=torch.float32, l_kernel=0)
    gpu = helpers.s4_layer(H=8, N2=32, n_ssm=1, seed=0, dtype=torch.float32, l_kernel=0).cuda()
    with torch.no_grad():
        assert_close(gpu.layer.kernel(1000).cpu(), layer.layer.kernel(1000), "cuda_vs_cpu_float32")


@pytest.mark.parametrize("mode", ["float32", "tf32", "bf16"])
def test_model_cuda_matches_cpu(mode):
    cpu, gpu = paired(d_model=16, n_layers=2, d_state=64)
    x = tokens(0, 2, 256, 256)
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    try:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16"):
            y_gpu = gpu(x.cuda()).float().cpu()
        with torch.no_grad():
            y_cpu = cpu(x)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    assert_close(
        y_gpu, y_cpu, {"float32": "cuda_vs_cpu_float32", "tf32": "cuda_vs_cpu_tf32", "bf16": "cuda_vs_cpu_bf16"}[mode]
    )


def test_16bit_training_memory_on_gpu():
    """The paper's model at 16 bits, one 1-s clip, forward + backward with the chunked loss: under 2 GiB."""
    torch.manual_seed(0)
    model = SashimiLM(model_config("sc09", 16)).cuda()
    x = torch.randint(0, 65536, (1, 16000), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    head = model.decoder.output_transform
    loss, count = metrics.loss_sum_and_count(model.features(x), head.weight, head.bias, x, chunked=True)
    (loss / count).backward()
    peak = torch.cuda.max_memory_allocated() / 2**30
    assert peak < 2.0, f"peak {peak:.2f} GiB"


def test_amp_training_step_stays_finite():
    model = helpers.lm(0, torch.float32, randomize=False, d_model=16, n_layers=2).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = tokens(0, 2, 256, 256).cuda()
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 256), x.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        assert math.isfinite(float(loss))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_compiled_fused_step_with_cuda_graphs_matches_cpu_module_step():
    """Generation's fast path on a GPU (torch.compile, mode "reduce-overhead": CUDA graphs) vs the
    modules' step on the CPU, 3 coarse blocks, float32."""
    from sashimi.model.fused import FusedStep

    cpu, gpu = paired(d_model=16, n_layers=2, d_state=64)
    x = tokens(0, 2, 48, 256)
    gpu.eval().setup_step()
    step = FusedStep(gpu, 2, compile=True)
    with torch.no_grad():
        got = torch.stack([step.step(x[:, t].cuda()).cpu() for t in range(x.shape[1])], 1)
    assert_close(got, helpers.rollout(cpu.eval(), x), "cuda_vs_cpu_float32")


def test_the_rng_state_carries_the_cuda_generators():
    """A checkpoint's RNG state holds every CUDA generator: restoring it replays the same CUDA draws
    (dropout on the GPU after a resume), and a state saved without them leaves them alone."""
    from sashimi.training import processes

    torch.cuda.manual_seed_all(3)
    saved = processes.rng_state()
    assert len(saved["cuda"]) == torch.cuda.device_count()
    first = torch.rand(4, device="cuda")
    processes.set_rng_state(saved)
    assert torch.equal(torch.rand(4, device="cuda"), first)
    processes.set_rng_state({"torch": saved["torch"]})
    assert not torch.equal(torch.rand(4, device="cuda"), first)
