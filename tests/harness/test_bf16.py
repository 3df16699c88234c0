"""The bf16 rule's parts (sashimi/harness/bf16.py): rounding to bf16, the plain bf16 copy, the
gradient vector and its relative error, each against a computation written out here."""

import copy

import torch
import torch.nn.functional as F

from sashimi.harness import bf16
from sashimi.harness.benchmark import summarize
from sashimi.training.metrics import LossModel
from tests.helpers import lm, tokens

CONFIG = dict(bits=8, d_model=5, pool=[2], n_layers=1, expand=2, ff=2, d_state=4)


def test_to_bf16_rounds_floating_tensors_and_tuples_of_them_and_leaves_the_rest():
    x, n = torch.tensor([1 + 2**-10, 3.0]), torch.tensor([3, 5])
    a, b, c = bf16.to_bf16((x, n, "s"))
    assert torch.equal(a, torch.tensor([1.0, 3.0])) and a.dtype == torch.float32 and b is n and c == "s"


def test_the_plain_copy_rounds_inputs_weights_and_outputs_and_leaves_the_model():
    model = lm(1, torch.float32, **CONFIG)
    before = copy.deepcopy(model.state_dict())
    plain = bf16.plain_bf16(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # a copy: the model is untouched
    head, x = plain.decoder.output_transform, torch.randn(3, 5) * 3
    want = F.linear(bf16.to_bf16(x), head.weight, head.bias).bfloat16().float()
    assert torch.equal(head(x), want)


def test_the_gradient_vector_and_the_case_against_a_computation_written_out():
    """gradients: every parameter's gradient in order, float64, rounded only when asked; bf16_case:
    the relative L2 errors of the bf16 loss's and the plain copy's gradients against float64's."""
    model = lm(2, torch.float32, **CONFIG).eval()
    x = tokens(2, 2, 8, 256)

    def grads(m, precision, rounded=False):
        m.zero_grad(set_to_none=True)
        LossModel(m, precision)(x, x)[0].backward()
        return torch.cat([(p.grad.bfloat16().float() if rounded else p.grad).reshape(-1) for p in m.parameters()])

    got = bf16.gradients(copy.deepcopy(model), x, "float32")
    assert got.dtype == torch.float64 and torch.equal(got, grads(copy.deepcopy(model), "float32").double())
    want = grads(copy.deepcopy(model).double(), "float32")
    ours = grads(model, "bf16").double()  # in place, as the case does: its forward writes C~ for 8 positions
    plain = grads(bf16.plain_bf16(model), "float32", rounded=True).double()
    expected = [float((v - want).norm() / want.norm()) for v in (ours, plain)]
    assert list(bf16.bf16_case(CONFIG, 2, 8)) == expected and 1e-4 < expected[0]


def test_the_benchmark_summary_reports_the_bf16_case():
    results = {"fwd_bwd_bf16": {"times": [3.0, 1.0, 2.0], "peak_gib": 1.5}}
    summary = summarize(results, 16000, 3, 100)
    assert summary["fwd_bwd_bf16_s"] == 2.0 and summary["fwd_bwd_bf16_peak_gib"] == 1.5
