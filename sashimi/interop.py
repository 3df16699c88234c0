"""python -m sashimi.interop: load the published SaShiMi weights and check that we compute what it computes.

  check FIXTURE.npz [--json]   load the fixture's state dict into our backbone and compare our
                               float64 and float32 forward, float32 step mode and kernels with
                               the published float64 results (sidecar FIXTURE.json alongside)
  import STATE_DICT --config JSON --out CKPT
                               turn a published standalone state dict (.pt or .npz) into our checkpoint

The published standalone model (state-spaces/s4 `models/sashimi/sashimi.py`) has the same module
names as ours; its pool and FF linears are Conv1d with kernel size 1, so their weights carry a
trailing axis of 1, which is the one difference in layout. Its S4 `C` holds C~ for `l_kernel`
(see `sashimi.kernel.SSMKernel`), which we honour as is.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from sashimi import checkpoint, spec
from sashimi.backbone import Backbone
from sashimi.model import ModelConfig, SashimiLM

SUPPORTED = {"bidirectional": False, "unet": False, "glu": True}


class InteropError(Exception):
    pass


def backbone_kwargs(constructor_kwargs: dict, state: dict) -> dict:
    """Our Backbone arguments from the published constructor kwargs; n_ssm is read off A_real."""
    for key, value in SUPPORTED.items():
        if constructor_kwargs.get(key, value) != value:
            raise InteropError(f"published option {key}={constructor_kwargs[key]!r} is not supported (only {key}={value})")
    known = {"d_model", "n_layers", "pool", "expand", "ff", "dropout", "n_ssm", "d_state", *SUPPORTED}
    unknown = set(constructor_kwargs) - known
    if unknown:
        print(f"warning: ignoring published constructor arguments {sorted(unknown)}; the comparison will show whether they matter", file=sys.stderr)
    kwargs = {k: constructor_kwargs[k] for k in ("d_model", "n_layers", "pool", "expand", "ff", "dropout") if k in constructor_kwargs}
    kwargs["pool"] = tuple(kwargs.get("pool", (4, 4)))
    a_real = [v for k, v in state.items() if k.endswith("kernel.A_real")]
    if not a_real:
        raise InteropError("no S4 kernel (…kernel.A_real) in the state dict: is it a SaShiMi backbone?")
    first = next(k for k in state if k.endswith("kernel.A_real"))
    H = state[first.replace("kernel.A_real", "kernel.C")].shape[1]
    S = a_real[0].shape[0]
    kwargs["n_ssm"] = None if S == H and H > 1 else S
    if constructor_kwargs.get("n_ssm", kwargs["n_ssm"]) not in (kwargs["n_ssm"], S):
        raise InteropError(f"constructor says n_ssm={constructor_kwargs['n_ssm']} but {first} has {S} rows")
    kwargs["d_state"] = 2 * a_real[0].shape[1]
    return kwargs


def to_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def convert_state(published: dict, model: torch.nn.Module) -> dict:
    """Published state dict -> ours, strictly: every key must exist on both sides with the same
    shape (up to the trailing Conv1d axis of 1). Raises InteropError listing every mismatch."""
    ours = model.state_dict()
    missing = sorted(set(ours) - set(published))
    unexpected = sorted(set(published) - set(ours))
    mismatched, out = [], {}
    for key in sorted(set(ours) & set(published)):
        value = to_tensor(published[key])
        want = ours[key].shape
        if value.ndim == len(want) + 1 and value.shape[-1] == 1 and value.shape[:-1] == want:
            value = value[..., 0]
        if value.shape != want:
            mismatched.append(f"{key}: published {tuple(value.shape)} vs ours {tuple(want)}")
        out[key] = value.to(ours[key].dtype)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
        raise InteropError("published state dict does not fit the backbone: " + " | ".join(parts))
    return out


def load_backbone(published: dict, constructor_kwargs: dict, dtype: torch.dtype = torch.float32) -> Backbone:
    model = Backbone(**backbone_kwargs(constructor_kwargs, published)).to(dtype)
    model.load_state_dict(convert_state(published, model), strict=True)
    return model


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


def state_of(arrays: dict, meta: dict) -> dict:
    """The state dict inside a fixture: every array but the recorded inputs and outputs
    (`init.*` values before the first forward, kernels, x_input, y_*, step matrices)."""
    outputs = ("init.", "kernel.", "kernel_", "x_", "y_", "step_")
    return {k: v for k, v in arrays.items() if not k.startswith(outputs)}


def run_steps(model: Backbone, x: torch.Tensor) -> torch.Tensor:
    model.setup_step()
    state = model.default_state(x.shape[0])
    ys = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = model.step(x[:, t], state)
            ys.append(y)
    return torch.stack(ys, dim=1)


def s4_kernels(model: Backbone, paths: dict) -> dict[str, torch.Tensor]:
    """Our kernel of each published S4 layer path (e.g. 'c_layers.0.layer') at its l_kernel."""
    out = {}
    with torch.no_grad():
        for path, info in paths.items():
            kernel = model.get_submodule(path).layer.kernel
            out[path] = kernel(int(info.get("l_kernel", int(kernel.l_kernel))))
    return out


def check(path: Path) -> list[spec.Comparison]:
    arrays, meta = read_fixture(path)
    state = state_of(arrays, meta)
    kwargs = meta["constructor_kwargs"]
    x = torch.from_numpy(arrays["x_input"])
    expected_y = arrays["y_conv_float64"]
    published_err = meta.get("published_float32_error", {})
    paths = meta.get("s4_layers") or {k[len("kernel_float64.") :]: {} for k in arrays if k.startswith("kernel_float64.")}
    tol64 = spec.load("tolerances")["interop_float64"]["atol"]
    slack = spec.load("tolerances")["interop_float32_slack"]
    results = []

    def compare(name, ours, theirs, bound):
        error = float(np.max(np.abs(spec.as_numpy(ours) - theirs)))
        results.append(spec.Comparison(name, error, bound))

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
    compare("float32 step (teacher-forced) vs published float64", run_steps(model32, x), expected_y, bound32("y_step_dense_vs_float64"))
    for name, K in s4_kernels(model32, paths).items():
        compare(f"float32 kernel {name}", K, arrays[f"kernel_float64.{name}"][0], bound32(name))
    return results


def read_state_dict(path: Path) -> dict:
    if path.suffix == ".npz":
        return {k: torch.from_numpy(np.asarray(v)) for k, v in np.load(path).items()}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InteropError(f"cannot read state dict {path}: {type(e).__name__}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InteropError(f"{path} does not hold a state dict")
    return state


def import_state_dict(state_path: Path, config_path: Path, out: Path, bits: int) -> dict:
    config = json.loads(config_path.read_text())
    kwargs = config.get("constructor_kwargs", config)
    state = read_state_dict(state_path)
    state = {k: v for k, v in state.items() if not k.startswith("init.")}
    if "x_input" in state or any(k.startswith(("y_", "kernel.", "kernel_")) for k in state):
        state = state_of(state, config)
    bk = backbone_kwargs(kwargs, state)
    model_config = ModelConfig(bits=bits, d_model=bk["d_model"], n_layers=bk.get("n_layers", 8), pool=list(bk["pool"]), expand=bk.get("expand", 2),
                               ff=bk.get("ff", 2), n_ssm=bk["n_ssm"], dropout=bk.get("dropout", 0.0), d_state=bk["d_state"])
    lm = SashimiLM(model_config)
    lm.backbone.load_state_dict(convert_state(state, lm.backbone), strict=True)
    checkpoint.save({"config": {"model": model_config.to_dict()}, "model": lm.state_dict(), "source": str(state_path)}, out)
    return model_config.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sashimi.interop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="compare against a published fixture (.npz + .json sidecar)")
    p_check.add_argument("fixture", type=Path)
    p_check.add_argument("--json", action="store_true")
    p_import = sub.add_parser("import", help="published state dict -> our checkpoint")
    p_import.add_argument("state_dict", type=Path)
    p_import.add_argument("--config", type=Path, required=True, help="JSON: the published constructor kwargs, or a sidecar holding them")
    p_import.add_argument("--out", type=Path, required=True)
    p_import.add_argument("--bits", type=int, choices=(8, 16), default=8, help="classes of the (freshly initialized) embedding and decoder")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            results = check(args.fixture)
            ok = all(r.holds for r in results)
            if args.json:
                print(json.dumps({"fixture": str(args.fixture), "ok": ok, "checks": [{"name": r.name, "error": r.error, "bound": r.bound, "holds": r.holds} for r in results]}, indent=1))
            else:
                for r in results:
                    print(f"  [{'ok' if r.holds else 'FAIL'}] {r.name:<58s} max abs diff {r.error:.3e}  tolerance {r.bound:.3e}")
                print(f"{args.fixture.name}: {'all checks hold' if ok else 'FAILED'}")
            return 0 if ok else 1
        config = import_state_dict(args.state_dict, args.config, args.out, args.bits)
        print(f"wrote {args.out}: backbone from {args.state_dict} ({config}); embedding and decoder are freshly initialized "
              "(a published standalone state dict holds the backbone only)")
        return 0
    except (InteropError, checkpoint.CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
