"""Agreement with the published implementation: its recorded outputs against ours from the same weights.

Two fixture formats: the standalone one (backbone state dict, `x_input`, `y_conv_float64`,
kernels; a JSON sidecar), and the pipeline one (docs/DESIGN.md, "Pipeline fixtures"): the
pipeline's state dict under its own names plus `fixture/tokens`, `fixture/logits_f64`, optionally
`fixture/logits_f32` and `fixture/step_dense_f64`, and an optional sidecar giving `dt_transform`.
"""

import json
from pathlib import Path

import numpy as np
import torch

from sashimi.harness.published_training import check_training
from sashimi.harness.verdict import Verdict, compare, tolerance_bound, within
from sashimi.io import pipeline, statefile
from sashimi.io.interop import InteropError, fixture_state, load_backbone, pipeline_model, state_of
from sashimi.model.backbone import Backbone
from sashimi.model.rollout import rollout


def read_fixture(path: Path) -> tuple[dict, dict]:
    if not path.is_file():
        raise InteropError(f"fixture not found: {path}")
    try:
        arrays = {k: v.numpy() for k, v in statefile.read_state_dict(path).items()}
    except statefile.StateFileError as e:
        raise InteropError(str(e)) from None
    sidecar = path.with_suffix(".json")
    if "train/tokens" in arrays:  # a training fixture (published_training): its sidecar holds the optimizer groups
        if not sidecar.is_file():
            raise InteropError(f"sidecar {sidecar} not found (expected beside the training fixture)")
        return arrays, json.loads(sidecar.read_text())
    if "fixture/tokens" in arrays:  # a pipeline fixture: the sidecar (dt_transform) is optional
        return arrays, json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    if not sidecar.is_file():
        raise InteropError(f"sidecar {sidecar} not found (expected beside the fixture)")
    meta = json.loads(sidecar.read_text())
    for key in ("constructor_kwargs", "batch", "length"):
        if key not in meta:
            raise InteropError(f"sidecar {sidecar} lacks {key!r}")
    return arrays, meta


def s4_kernels(model: Backbone, paths: dict) -> dict[str, torch.Tensor]:
    """Our kernel of each published S4 layer path (e.g. 'c_layers.0.layer') at its l_kernel."""
    out = {}
    with torch.no_grad():
        for path, info in paths.items():
            kernel = model.get_submodule(path).layer.kernel
            out[path] = kernel(int(info.get("l_kernel", int(kernel.l_kernel))))
    return out


def check(path: Path, dt_transform: str | None = None) -> list[Verdict]:
    """Every check of a fixture, in either format; `dt_transform` (pipeline v4) replaces the sidecar's."""
    arrays, meta = read_fixture(path)
    if "train/tokens" in arrays:
        return check_training(path, arrays, meta)
    if "fixture/tokens" in arrays:
        if dt_transform is not None:
            meta = {**meta, "dt_transform": dt_transform}
        return check_pipeline(path, arrays, meta)
    if dt_transform not in (None, "exp"):
        raise InteropError(f"--dt-transform {dt_transform}: the standalone model's Delta is exp(inv_dt)")
    return check_standalone(path, arrays, meta)


def other_transform_passes(path: Path, results: list[Verdict]) -> str | None:
    """When a v4 pipeline fixture fails under the transform it was checked with, the other Delta
    transform if every check passes under it (the layout's keys cannot tell which one trained it)."""
    if not any(r.failed for r in results):
        return None
    arrays, meta = read_fixture(path)
    if "fixture/tokens" not in arrays or pipeline.detect_layout(fixture_state(arrays)) != "pipeline-v4":
        return None
    other = "softplus" if meta.get("dt_transform", "exp") == "exp" else "exp"
    return other if not any(r.failed for r in check_pipeline(path, arrays, {**meta, "dt_transform": other})) else None


def fixture_row(path: Path, name: str, ours, theirs, bound: float | None = None) -> Verdict:
    """One row of a fixture's check: within `bound`, or, given none, interop_float64 relative to
    max |theirs| (the row and the scale kept for the tolerance measure)."""
    if bound is None:
        return compare(ours, theirs, "interop_float64", "published", f"{path.stem}: {name}")
    return within("published", f"{path.stem}: {name}", ours, theirs, bound)


def check_pipeline(path: Path, arrays: dict, meta: dict) -> list[Verdict]:
    """Our full model (float64 and float32 forward, teacher-forced step mode) against the pipeline's
    float64 logits (interop_float64; float32: twice the pipeline's own float32 error plus
    interop_float32_slack's atol), and the pipeline's own step output against its forward and ours:
    a published step mode that disagrees with the published forward fails here."""
    for key in ("fixture/tokens", "fixture/logits_f64"):
        if key not in arrays:
            raise InteropError(f"{path}: pipeline fixture lacks {key!r}")
    state = {k: torch.from_numpy(v) for k, v in fixture_state(arrays).items()}
    layout = pipeline.detect_layout(state)
    dt_transform = meta.get("dt_transform")
    tokens = torch.from_numpy(arrays["fixture/tokens"])
    expected = arrays["fixture/logits_f64"]
    results = []

    def compare(name, ours, theirs, bound=None):
        results.append(fixture_row(path, name, ours, theirs, bound))

    model64 = pipeline_model(state, layout, dt_transform, torch.float64).model.eval()
    with torch.no_grad():
        compare("float64 forward vs published float64", model64(tokens), expected)
    step64 = rollout(model64, tokens)
    compare("float64 step (teacher-forced) vs published float64 forward", step64, expected)
    if "fixture/logits_f32" in arrays:
        bound32 = tolerance_bound(
            "interop_float32_slack",
            plain_error=float(np.abs(arrays["fixture/logits_f32"].astype(np.float64) - expected).max()),
        )  # mutate: skip float32 or float64 differences: the published error to 1e-7 of itself, the slack twice it
        model32 = pipeline_model(state, layout, dt_transform, torch.float32).model.eval()
        with torch.no_grad():
            compare("float32 forward vs published float64", model32(tokens), expected, bound32)
        compare("float32 step (teacher-forced) vs published float64", rollout(model32, tokens), expected, bound32)
    if "fixture/step_dense_f64" in arrays:
        published_step = arrays["fixture/step_dense_f64"]
        T = published_step.shape[1]
        compare(f"published step (dense, first {T}) vs published forward", published_step, expected[:, :T])
        compare(f"published step (dense, first {T}) vs our step", published_step, step64[:, :T])
    return results


def check_standalone(path: Path, arrays: dict, meta: dict) -> list[Verdict]:
    """Our float64 forward and kernels (interop_float64) and our float32 forward, teacher-forced
    step mode and kernels (twice the published float32 error plus interop_float32_slack's atol)
    against the published pure-float64 results of the fixture."""
    state = state_of(arrays)
    kwargs = meta["constructor_kwargs"]
    x = torch.from_numpy(arrays["x_input"])
    expected_y = arrays["y_conv_float64"]
    published_err = meta.get("published_float32_error", {})
    paths = meta.get("s4_layers") or {
        k[len("kernel_float64.") :]: {} for k in arrays if k.startswith("kernel_float64.")
    }
    results = []

    def compare(name, ours, theirs, bound=None):
        results.append(fixture_row(path, name, ours, theirs, bound))

    model64 = load_backbone(state, kwargs, torch.float64)
    with torch.no_grad():
        compare("float64 forward vs published float64", model64(x.double()), expected_y)
    for name, K in s4_kernels(model64, paths).items():
        compare(f"float64 kernel {name}", K, arrays[f"kernel_float64.{name}"][0])

    model32 = load_backbone(state, kwargs, torch.float32)

    def bound32(key):
        return tolerance_bound("interop_float32_slack", plain_error=published_err.get(key, 0.0))

    with torch.no_grad():
        compare("float32 forward vs published float64", model32(x), expected_y, bound32("y_conv_vs_float64"))
    compare(
        "float32 step (teacher-forced) vs published float64",
        rollout(model32, x),
        expected_y,
        bound32("y_step_dense_vs_float64"),
    )
    for name, K in s4_kernels(model32, paths).items():
        compare(f"float32 kernel {name}", K, arrays[f"kernel_float64.{name}"][0], bound32(name))
    return results
