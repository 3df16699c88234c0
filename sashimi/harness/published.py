"""Agreement with the published implementation: its recorded outputs (a fixture .npz with its
JSON sidecar) against ours from the same weights."""

import json
from pathlib import Path

import numpy as np
import torch

import specs
from sashimi.harness.verdict import Verdict, within
from sashimi.io.interop import InteropError, load_backbone, state_of
from sashimi.model.backbone import Backbone
from sashimi.model.rollout import rollout


def read_fixture(path: Path) -> tuple[dict, dict]:
    if not path.is_file():
        raise InteropError(f"fixture not found: {path}")
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise InteropError(f"sidecar {sidecar} not found (expected beside the fixture)")
    meta = json.loads(sidecar.read_text())
    for key in ("constructor_kwargs", "batch", "length"):
        if key not in meta:
            raise InteropError(f"sidecar {sidecar} lacks {key!r}")
    return dict(np.load(path)), meta


def s4_kernels(model: Backbone, paths: dict) -> dict[str, torch.Tensor]:
    """Our kernel of each published S4 layer path (e.g. 'c_layers.0.layer') at its l_kernel."""
    out = {}
    with torch.no_grad():
        for path, info in paths.items():
            kernel = model.get_submodule(path).layer.kernel
            out[path] = kernel(int(info.get("l_kernel", int(kernel.l_kernel))))
    return out


def check(path: Path) -> list[Verdict]:
    """Our float64 forward and kernels (interop_float64) and our float32 forward, teacher-forced
    step mode and kernels (twice the published float32 error plus interop_float32_slack's atol)
    against the published pure-float64 results of the fixture."""
    arrays, meta = read_fixture(path)
    state = state_of(arrays)
    kwargs = meta["constructor_kwargs"]
    x = torch.from_numpy(arrays["x_input"])
    expected_y = arrays["y_conv_float64"]
    published_err = meta.get("published_float32_error", {})
    paths = meta.get("s4_layers") or {k[len("kernel_float64.") :]: {} for k in arrays if k.startswith("kernel_float64.")}
    tol64 = specs.load("tolerances")["interop_float64"]["atol"]
    slack = specs.load("tolerances")["interop_float32_slack"]
    results = []

    def compare(name, ours, theirs, bound):
        results.append(within("published", f"{path.stem}: {name}", ours, theirs, bound))

    model64 = load_backbone(state, kwargs, torch.float64)
    with torch.no_grad():
        compare("float64 forward vs published float64", model64(x.double()), expected_y, tol64)
    for name, K in s4_kernels(model64, paths).items():
        compare(f"float64 kernel {name}", K, arrays[f"kernel_float64.{name}"][0], tol64)

    model32 = load_backbone(state, kwargs, torch.float32)

    def bound32(key):
        return slack["rtol"] * published_err.get(key, 0.0) + slack["atol"]

    with torch.no_grad():
        compare("float32 forward vs published float64", model32(x), expected_y, bound32("y_conv_vs_float64"))
    compare("float32 step (teacher-forced) vs published float64", rollout(model32, x), expected_y, bound32("y_step_dense_vs_float64"))
    for name, K in s4_kernels(model32, paths).items():
        compare(f"float32 kernel {name}", K, arrays[f"kernel_float64.{name}"][0], bound32(name))
    return results
