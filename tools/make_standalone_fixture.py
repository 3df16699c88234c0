"""Build a small published-implementation fixture (tests/published/standalone_small.npz + .json).

Runs the OFFICIAL standalone SaShiMi of state-spaces/s4 (``models/sashimi/sashimi.py`` +
``models/s4/s4.py`` at commit e757cef57d89e448c413de7325ed5601aceaac13) on CPU and records, in the
format of ../shared/fixtures/official_sashimi_small_a.npz (same construction, same key names, same
sidecar fields), only the arrays our checker and tests read:

  * the state dict after the first forward (C holding C~, l_kernel = stage length), Conv1d layout;
  * ``init.<key>`` for the entries the first forward changed (every S4 ``C`` and ``l_kernel``);
  * ``x_input``;
  * ``y_conv_float64`` and ``kernel_float64.<path>`` (pure float64 from the saved weights);
  * ``kernel_first_s4`` (float32 kernel of the first S4 layer at its l_kernel).

Not saved (read by nothing in this repository; the first three are large): ``step_dense_first_s4.{dA,dB,dC}``,
``y_step_diagonal``, ``y_step_linear``, the float32 ``kernel.<path>`` arrays, and (unless
--keep-float32-outputs, +~30 KB) ``y_conv`` and ``y_step_dense``. They are all still computed here, so
every measured error of the sidecar (``published_float32_error``, ``max_abs_diffs_step_vs_conv``, the
dA/dB/dC kernel check in ``notes``) is this fixture's own.

None of the official code is copied: it is imported from a work tree of the official repository.
Its only foreign import, ``pytorch_lightning.utilities.rank_zero_only`` (used to wrap logger
methods), is replaced by an identity function when pytorch_lightning is not installed.

Environment (kept apart from the project .venv; nothing is installed there), with
a clone of the official repository (git clone https://github.com/state-spaces/s4 /tmp/s4-src):

    mkdir -p /tmp/s4-standalone
    git --git-dir=/tmp/s4-src/.git archive e757cef models | tar -x -C /tmp/s4-standalone
    python3.11 -m venv /tmp/standalone-venv
    # either a full venv (CPU torch through the project's pin) ...
    /tmp/standalone-venv/bin/pip install -c constraints.txt torch==2.13.0 numpy scipy einops
    # ... or reuse torch/numpy/scipy of the project venv read-only and add only einops:
    #   echo "$PWD/.venv/lib/python3.11/site-packages" \
    #       > /tmp/standalone-venv/lib/python3.11/site-packages/zz_main_venv.pth
    #   /tmp/standalone-venv/bin/pip install -c constraints.txt einops
    # (the fixture in tests/published was made this second way: torch 2.13.0+cpu, numpy 2.4.6,
    #  scipy 1.17.1, einops 0.8.2; `git archive e757cef` of the whole tree fails on a missing
    #  notebook blob in some clones, hence `archive ... models`.)

Exact command (from the repository root):

    /tmp/standalone-venv/bin/python tools/make_standalone_fixture.py \
        --s4-root /tmp/s4-standalone --batch 2 --length 128 \
        --out tests/published/standalone_small.npz

If --s4-root does not exist, the script extracts ``models/`` of --commit from --git-dir itself.
``--compare-to ../shared/fixtures/official_sashimi_small_a.npz --batch 2 --length 256 --out /tmp/x.npz``
rebuilds the large fixture's configuration and prints the max difference per common array
(a check that this script reproduces the documented construction).

Then check it with our code:  .venv/bin/python -m sashimi.interop check tests/published/standalone_small.npz
"""

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from official.standalone import (
    COMMIT,
    CONSTRUCTOR_KWARGS,
    IMPLIED_S4_KWARGS,
    arrays_of,
    build,
    extract_official,
    import_official,
    maxabs,
    step_run,
    verify_tree,
)


def sidecar(r: dict, arrays: dict, out: Path, kwargs, B, L, seed, commit, hashes) -> dict:
    y64 = r["y64"].numpy()
    y32 = r["y_conv"].numpy()
    conv_err = maxabs(y32, y64)
    diffs = {}
    for mode, y in r["steps"].items():
        d = np.abs(y.numpy().astype(np.float64) - y32.astype(np.float64))
        diffs[mode] = {
            "max_abs_diff": float(d.max()),
            "mean_abs_diff": float(d.mean()),
            "max_abs_y_conv": float(np.abs(y32).max()),
            "stdout": r["stdout"][mode],
        }
    diffs["conv_float32_vs_float64"] = maxabs(y32, r["y_mixed"].numpy())
    err = {p: maxabs(r["k32"][p].numpy(), r["k64"][p].numpy()) for p in r["paths"]}
    err["y_step_dense_vs_float64"] = maxabs(r["steps"]["dense"].numpy(), y64)
    err["y_step_linear_vs_float64"] = maxabs(r["steps"]["linear"].numpy(), y64)
    err["y_conv_vs_float64"] = conv_err
    diag64 = None
    m64 = copy.deepcopy(r["model"]).double()
    for mod in m64.modules():  # drop cached complex64 FFT nodes
        for attr in ("omega", "z"):
            if attr in mod.__dict__:
                del mod.__dict__[attr]
    diag64 = maxabs(step_run(m64, r["x"].double(), "diagonal")[0].numpy(), y64)
    first = r["paths"][0]
    return {
        "file": out.name,
        "source": "state-spaces/s4 (HazyResearch) standalone models/sashimi/sashimi.py + models/s4/s4.py",
        "commit": commit,
        "torch_version": torch.__version__,
        "constructor": "Sashimi(**constructor_kwargs)  (models/sashimi/sashimi.py)",
        "constructor_kwargs": kwargs,
        "implied_s4_kwargs": IMPLIED_S4_KWARGS,
        "seed": seed,
        "procedure": [
            "torch.manual_seed(seed); model = Sashimi(**constructor_kwargs); model.eval()",
            "x_input = torch.randn(B, L, d_model)  (global RNG, immediately after construction)",
            "with no_grad: y_conv = model(x_input)[0]  (saved only with --keep-float32-outputs) -- first forward: "
            "every S4 kernel runs _setup_C(L_stage), replacing C by C~=(I - dA^L)^T C (conj-pair form) and setting "
            "buffer l_kernel=L_stage",
            "state_dict saved AFTER that forward under its own key names; entries that changed (the C params and "
            'l_kernel) are also saved BEFORE the forward under prefix "init."',
            "kernel_first_s4: kern(L=l_kernel)[0] of the first S4 layer, shape (channels=1, H, l_kernel) (the float32 "
            "kernel.<path> of the other layers are not saved; their errors are in published_float32_error)",
            "y_step_<mode>: deepcopy(model).setup_rnn(mode); state=default_state(B); "
            "y_t,state=model.step(x_input[:,t],state) for t in range(L); stacked on dim 1; run for dense, diagonal and "
            "linear to measure max_abs_diffs_step_vs_conv and published_float32_error; y_step_dense is saved only with "
            "--keep-float32-outputs, the others never",
            "step_dense_first_s4.{dA,dB,dC} (the discretized conj-expanded matrices of the first S4 kernel after "
            'setup_rnn("dense"), shapes '
            + json.dumps(r["dense_shapes"])
            + ") are computed for notes.kernel_check but not saved",
            "y_conv_float64: a fresh Sashimi(**constructor_kwargs) given the saved state dict (C holding C~, "
            "l_kernel=L_stage) by load_state_dict, cast with .double() BEFORE any forward (so no float32 FFT node "
            "(omega, z) is ever cached in it and every step runs in float64), applied to x_input cast to float64",
            "kernel_float64.<path>: kern(L=l_kernel)[0] of every S4 layer of that float64 model, shape (1, H, "
            "l_kernel)",
            "max_abs_diffs_step_vs_conv.conv_float32_vs_float64: y_conv vs deepcopy(model).double()(x_input.double()), "
            "i.e. a float64 copy that keeps the float32 model's cached complex64 FFT nodes; the top-level "
            "conv_float32_vs_float64 is y_conv vs y_conv_float64",
            "official files used (sha256): " + json.dumps(hashes),
            "made by tools/make_standalone_fixture.py (see its docstring for the environment and command)",
        ],
        "dtype": "float32 (parameters, x_input, kernel_first_s4, and y_conv, y_step_dense when saved); float64 for "
        "y_conv_float64 and kernel_float64.*",
        "batch": B,
        "length": L,
        "first_s4_layer": first,
        "s4_layers": {p: {"l_kernel": r["l_kernels"][p], "shape": list(r["k32"][p].shape)} for p in r["paths"]},
        "max_abs_diffs_step_vs_conv": diffs,
        "keys": {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()},
        "notes": {
            "param_conventions": "Complex params are stored as real views with a trailing dim of size 2 = (real, "
            "imag). Per S4 kernel: Lambda = -exp(A_real) - 1j*A_imag, shape (n_ssm, N/2); dt = "
            "exp(inv_dt), shape (H,1); B (1, n_ssm, N/2, 2); P (rank=1, n_ssm, N/2, 2), Q = "
            "conj(P) (tied), state matrix A = diag(Lambda) - P P^*; C (channels=1, H, N/2, 2) "
            "holds C~ once l_kernel>0; D lives at <block>.layer.layer.D shape (1,H). Conv1d (k=1) "
            "weights of pool/FF linears have shape (out, in, 1). N = d_state = 64 (32 stored "
            "conjugate-pair modes).",
            "kernel_check": f"K[h,k] = Re(dC[h] . dA[h]^k . dB[h]) from the dense step matrices of {first} (not saved) "
            f"reproduces kernel_first_s4 to {r['kernel_check']:.2g}.",
            "diagonal_mode_caveat": "The diagonal step mode is NOT a valid reference (y_step_diagonal is not saved): "
            "torch.linalg.eig of the 64x64 complex64 dA (HiPPO-LegS, N=64) is ill-conditioned "
            "on CPU (see the diagonalization errors in "
            "max_abs_diffs_step_vs_conv.diagonal.stdout), so it deviates from y_conv by up to "
            f"{diffs['diagonal']['max_abs_diff']:.2g}. In float64 the same path matches "
            f"y_conv_float64 to {diag64:.2g}. Use the dense (or linear) mode.",
        },
        "conv_float32_vs_float64": conv_err,
        "published_float32_error": err,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--s4-root",
        type=Path,
        default=Path("/tmp/s4-standalone"),
        help="work tree holding models/ of the official repository",
    )
    parser.add_argument(
        "--git-dir",
        type=Path,
        default=Path("/tmp/s4-src/.git"),
        help="official git dir (to extract and verify models/)",
    )
    parser.add_argument("--commit", default=COMMIT)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("tests/published/standalone_small.npz"))
    parser.add_argument(
        "--keep-float32-outputs",
        action="store_true",
        help="also save y_conv and y_step_dense (float32; read by nothing here)",
    )
    parser.add_argument(
        "--compare-to", type=Path, help="a fixture of the same B, L, seed: print max|diff| per common array"
    )
    args = parser.parse_args(argv)

    commit = extract_official(args.s4_root, args.git_dir, args.commit) if args.git_dir.is_dir() else args.commit
    hashes = verify_tree(args.s4_root, args.git_dir, commit)
    Sashimi = import_official(args.s4_root)
    kwargs = dict(CONSTRUCTOR_KWARGS)
    r = build(Sashimi, kwargs, args.batch, args.length, args.seed)
    arrays = arrays_of(r, args.keep_float32_outputs)
    meta = sidecar(r, arrays, args.out, kwargs, args.batch, args.length, args.seed, commit, hashes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(arrays)} arrays) and {args.out.with_suffix('.json')}"
    )
    print("l_kernel:", r["l_kernels"])
    print("published_float32_error:", json.dumps(meta["published_float32_error"], indent=1))
    if args.compare_to:
        other = np.load(args.compare_to)
        worst = 0.0
        for k in sorted(set(other.files) & set(arrays)):
            if other[k].shape != arrays[k].shape:
                print(f"  {k}: shape {other[k].shape} vs {arrays[k].shape}")
                continue
            d = maxabs(other[k], arrays[k]) if other[k].size else 0.0
            worst = max(worst, d)
            if d:
                print(f"  {k}: max|diff| {d:.3g}")
        print(
            f"compared {len(set(other.files) & set(arrays))} common arrays with {args.compare_to}: worst max|diff| "
            f"{worst:.3g}; "
            f"only there: {sorted(set(other.files) - set(arrays))}"
        )


if __name__ == "__main__":
    main()
