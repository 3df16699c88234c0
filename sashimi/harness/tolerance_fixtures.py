"""The tolerance rows about the committed published fixtures, measured on them (fixed cases, not
random ones): `python -m sashimi.harness.tolerances --measure` reads these."""

import json

import numpy as np
import torch

import specs
from sashimi.harness import gate, published
from sashimi.harness.verdict import error_and_scale
from sashimi.model.kernel import SSMKernel


def published_float64(rng, seed) -> list[tuple[float, float]]:
    """Every float64 row of `interop check` on the checkout's fixtures (not random: the fixtures are
    fixed), leaving out the rows a fixture kept for its known defect must fail."""
    cases = []
    for path in sorted(gate.DEFAULT_FIXTURES.glob("*.npz")):
        sidecar = path.with_suffix(".json")
        defect = json.loads(sidecar.read_text()).get("known_defect", {}) if sidecar.is_file() else {}
        cases += [
            (v.error, v.scale)
            for v in published.check(path)
            if v.row == "interop_float64" and not any(word in v.name for word in defect.get("fails", []))
        ]
    return cases


def first_published_kernel(C_from_init: bool):
    """The first S4 kernel of the published standalone fixture, as tests/model/test_kernel.py loads
    it: (our float32 kernel vs the published float32 kernel, and vs the float64 one) or, with
    `C_from_init`, our C~ written from the fixture's initial C vs the published C~."""

    def case(rng, seed) -> list[tuple[float, float]]:
        arrays = dict(np.load(gate.DEFAULT_FIXTURES / "standalone_small.npz"))
        prefix = "c_layers.0.layer.layer.kernel."
        state = {k[len(prefix) :]: torch.from_numpy(np.asarray(v)) for k, v in arrays.items() if k.startswith(prefix)}
        L = int(state["l_kernel"])
        if C_from_init:
            state["C"], state["l_kernel"] = (
                torch.from_numpy(np.asarray(arrays["init." + prefix + k])) for k in ("C", "l_kernel")
            )
        kernel = SSMKernel(state["C"].shape[1], N=2 * state["C"].shape[2], n_ssm=None)
        kernel.load_state_dict(state, strict=True)  # mutate: skip the fixture holds every key: nothing to refuse
        with torch.no_grad():
            K = kernel(L)
        if C_from_init:
            return [error_and_scale(kernel.C, arrays[prefix + "C"])]
        return [
            error_and_scale(K, arrays["kernel_first_s4"][0]),
            error_and_scale(K, arrays["kernel_float64.c_layers.0.layer"][0]),
        ]

    return case


def published_training(rng, seed) -> list[tuple[float, float]]:
    """Every loss, gradient and parameter row of the committed training fixtures (fixed, like the
    fixtures), with its scale: the largest entry of the official tensor (the row's bound / rtol)."""
    rtol = specs.load("tolerances")["training_float64"]["rtol"]
    return [
        (v.error, v.bound / rtol)
        for path in sorted(gate.DEFAULT_FIXTURES.glob("training_*.npz"))
        for v in published.check(path)
        if v.error is not None and v.bound is not None
    ]
