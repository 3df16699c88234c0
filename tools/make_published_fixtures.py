#!/usr/bin/env python3
"""Produce small SaShiMi test fixtures from the OFFICIAL state-spaces/s4 training pipeline.

This script imports the official pipeline code (``train.py`` + ``src/`` of a
state-spaces/s4 checkout), builds the SC09 SaShiMi ``SequenceLightningModule``
the way that checkout's ``generate.py`` does, randomizes every parameter
deterministically, and records the pipeline's own forward / step outputs.
Nothing of the official code is copied into this repository: the checkout is
only put on ``sys.path`` of this process.

Environment (kept separate from the project's .venv, which must not get these)::

    python3.11 -m venv /tmp/pipeline-venv
    /tmp/pipeline-venv/bin/pip install -c constraints.txt torch==2.13.0 numpy scipy \
        hydra-core omegaconf einops rich "pytorch-lightning==2.0.*" opt_einsum "setuptools<81"

  * torch 2.13.0 (CPU wheel), hydra-core 1.3, omegaconf 2.3, pytorch-lightning 2.0.9
    (+ its torchmetrics / lightning-utilities), einops, rich, numpy, scipy.
  * opt_einsum is imported at module level by v3.0.0's ``src/models/sequence/ss/s4.py``.
  * setuptools<81: lightning_fabric 2.0 calls ``pkg_resources.declare_namespace``
    and setuptools>=81 no longer ships ``pkg_resources``.
  * Never installed: torchaudio, torchvision, torchtext, wandb, pandas, datasets, PIL,
    cv2, matplotlib, seaborn, sklearn, sktime, timm, ... They are only imported at module
    level for data loading / logging; this script replaces whichever of them is missing
    by an inert stub module (installed in ``sys.meta_path`` of this process only,
    after pytorch_lightning has been imported).
  * No pykeops, no CUDA extension: on CPU the S4 kernels use the naive Cauchy /
    Vandermonde path.

Official code checkouts (git archive of each tag into its own folder), e.g.::

    git clone https://github.com/state-spaces/s4 /tmp/s4-src; G=/tmp/s4-src/.git
    for t in v3.0.0 v4.1.0 e757cef; do d=/tmp/s4-$t; mkdir -p $d
      git --git-dir=$G archive $t configs src train.py generate.py | tar -x -C $d; done

Usage::

    /tmp/pipeline-venv/bin/python tools/make_published_fixtures.py \
        --s4 /tmp/s4-e757cef --ref v4 --out tests/published [--seed 0]

``--ref`` is one of v3.0.0, v4 (HEAD e757cef, includes 35cc242 "Fix bug in S4Block
stepping"), v4.1.0. Outputs (see tools/README.md):

  DIR/pipeline_<ref>.npz   state dict (exact key names, stored dtypes) + fixture/* arrays
  DIR/pipeline_<ref>.json  sidecar: config, commit, measured errors, C~ buffer lengths
  DIR/sc09_<ref>_keys.json (v3.0.0 and v4 only) full-size SC09 key -> [shape, dtype] and
                           parameter counts for final_act glu / id
"""

import argparse
import contextlib
import io
import json
import os
import sys

import numpy as np
from official import pipeline as P
from official.pipeline import (
    BATCH,
    REFS,
    build_module,
    cfg_dict,
    compose,
    git_commit,
    kernel_buffers,
    keys_json,
    load_fresh,
    run_forward,
    run_step,
    small_overrides,
)
from official.randomize import RULES, randomize_state_dict, stage_len
from official.stubs import install_stubs


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--s4", required=True, help="path to a state-spaces/s4 checkout (configs/, src/, train.py)")
    ap.add_argument("--ref", required=True, choices=REFS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--commit", default=None, help="commit id to record (default: git rev-parse if a work tree)")
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--length", type=int, default=P.L_FIX, help="fixture length (multiple of prod(pool))")
    ap.add_argument("--steps", type=int, default=None, help="step positions T (default: = length)")
    P.add_shape_flags(ap, "pipeline")
    args = ap.parse_args()
    args.shape_used = P.set_shape(args.shape)
    T = args.length if args.steps is None else args.steps
    assert args.length % int(np.prod(P.POOL)) == 0 and 0 < T <= args.length
    assert args.length <= (P.V3_LMAX if args.ref == "v3.0.0" else P.L_BUF), "fixture longer than the C~ buffer"
    return args, T


def randomized_model(s4, ref, seed):
    """The small model's config and its randomized state dict (v3: the buffer lengths checked
    against what the pipeline's own first forward sets)."""
    import torch

    torch.manual_seed(seed)
    config = compose(s4, small_overrides(ref))
    model = build_module(config)
    sd0 = model.state_dict()
    if ref == "v3.0.0":
        # v3: buffer L is set by _setup_C(l_max) at the first forward; record what
        # the pipeline itself sets (must equal stage_len).
        with torch.no_grad():
            run_forward(model, torch.zeros(1, P.L_FIX, dtype=torch.long))
        for k, v in kernel_buffers(model).items():
            assert v == stage_len(k, ref), (k, v, stage_len(k, ref))
    return config, randomize_state_dict(sd0, seed, ref)


def pipeline_runs(config, sd_np, tokens, T, s4):
    """Forward in float64 and float32, teacher-forced step in both, and a float64 forward after a
    float32 one (stale complex64 caches?), each on a fresh model."""
    import torch

    r = {}
    m64 = load_fresh(config, sd_np, torch.float64)
    r["logits64"] = run_forward(m64, tokens)
    assert r["logits64"].dtype == torch.float64
    r["logits32"] = run_forward(load_fresh(config, sd_np, torch.float32), tokens)
    r["buffers"] = kernel_buffers(m64)
    r["step64"], r["hook"] = run_step(load_fresh(config, sd_np, torch.float64), tokens[:, :T], s4)
    r["step32"], _ = run_step(load_fresh(config, sd_np, torch.float32), tokens[:, :T], s4)
    mstale = load_fresh(config, sd_np, torch.float32)
    run_forward(mstale, tokens)
    mstale.double()
    r["logits_stale"] = run_forward(mstale, tokens)
    # same, but drop the non-buffer FFT-node caches (omega, z) that .double() does not convert
    r["cleared"] = []
    for name, mod in mstale.named_modules():
        for attr in ("omega", "z"):
            if isinstance(getattr(mod, attr, None), torch.Tensor) and attr not in dict(
                mod.named_buffers(recurse=False)
            ):
                delattr(mod, attr)
                r["cleared"].append(f"{name}.{attr}")
    r["logits_cleared"] = run_forward(mstale, tokens)
    return r


def buffer_dynamics(config, ref):
    """How the C~ buffer length evolves in the pipeline (fresh, unloaded small model)."""
    import torch

    probe = build_module(config)
    dyn = []
    for Lp in (P.L_BUF, P.L_FIX, 320) if ref != "v3.0.0" else (P.L_FIX, 4 * P.V3_LMAX):
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            run_forward(probe, torch.zeros(1, Lp, dtype=torch.long))
        bufs = kernel_buffers(probe)
        top = sorted(v for k, v in bufs.items() if k.startswith(f"model.u_layers.{len(P.POOL) - 1}."))
        dyn.append({"forward_length": Lp, "top_stage_buffer": top[0], "all": sorted(set(bufs.values()))})
    return dyn


def measured_errors(config, sd_np, tokens, r):
    """The runs' largest differences from the float64 forward, after checking that the state dict loads back."""
    import torch

    sd_back = {k: v.numpy() for k, v in load_fresh(config, sd_np, torch.float32).state_dict().items()}
    for k in sd_np:
        assert np.array_equal(sd_back[k], sd_np[k]), k

    def mad(a, b):
        return float((a.double() - b.double()[:, : a.shape[1]]).abs().max())

    logits64 = r["logits64"]
    return {
        "f32_vs_f64_logits_max_abs": mad(r["logits32"], logits64),
        "step_dense_f64_vs_logits_f64_max_abs": mad(r["step64"], logits64),
        "step_dense_f32_vs_logits_f64_max_abs": mad(r["step32"], logits64),
        "double_after_f32_forward_vs_logits_f64_max_abs": mad(r["logits_stale"], logits64),
        "double_after_f32_forward_caches_cleared_vs_logits_f64_max_abs": mad(r["logits_cleared"], logits64),
        "stale_caches_cleared": sorted(set(c.rsplit(".", 1)[-1] for c in r["cleared"])),
        "fresh_f64_vs_fresh_f64_forward_max_abs": mad(
            run_forward(load_fresh(config, sd_np, torch.float64), tokens), logits64
        ),
        "logits_f64_abs_max": float(logits64.abs().max()),
        "logits_f64_std": float(logits64.std()),
        "step_setup_hook": r["hook"],
    }


def stages(L: int) -> str:
    """The lengths each depth of the U-Net runs at, top first: "64/16/4" for L 64 and pool [4, 4]."""
    return "/".join(str(L // int(np.prod(P.POOL[:i]))) for i in range(len(P.POOL) + 1))


def sidecar(args, T, commit, config, measured, buffers, dyn, stubbed, npz):
    """pipeline_<ref>.json: how the fixture was made and what was measured on it."""
    import torch

    ref, B, L = args.ref, args.batch, args.length
    side = {
        "ref": ref,
        "commit": commit,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "seed": args.seed,
        "dt_transform": "exp" if ref == "v3.0.0" else "softplus",
        "lambda": ("Lambda = -exp(inv_w_real) + 1j*w_imag" if ref == "v3.0.0" else "Lambda = -exp(A_real) - 1j*A_imag"),
        "config": cfg_dict(config),
        "overrides": small_overrides(ref),
        **({"shape": args.shape_used} if args.shape else {}),
        "fixture": {
            "B": B,
            "L": L,
            "T_step": T,
            "n_classes": 1 << P.BITS,
            "d_state": P.D_STATE,
            "n_ssm": config.model.layer.get("n_ssm"),
        },
        "measured": measured,
        "buffers": buffers,
        "buffer_dynamics": dyn,
        "buffer_dynamics_note": (
            "fresh pipeline model (l_kernel/L = 0), forwards of the listed lengths in order; "
            "v4: first forward sets l_kernel to its length, a longer one doubles it until >= length; "
            "v3: the first forward sets L = layer l_max (dataset l_max per stage) and it never grows "
            "(S4.forward asks for min(L, l_max) and the kernel stays l_max long)."
        ),
        "buffers_note": (
            "C~ length per S4 layer (v4: kernel.l_kernel, v3: kernel.kernel.L). The stored C is C~ "
            f"for that length; the fixture input (L={L} -> stage lengths {stages(L)}) is not longer, "
            "so the kernel of the buffer length is computed and truncated. "
            + (
                "v3: L buffers are what the pipeline's own first forward sets (_setup_C(l_max) with "
                f"dataset.__l_max={P.V3_LMAX} -> layer l_max per stage); the random C is stored as C~."
                if ref == "v3.0.0"
                else f"v4: l_kernel set in the state dict to {stages(P.L_BUF)}, i.e. what a "
                f"first forward at length {P.L_BUF} leaves (model.layer.l_max is null in the sashimi "
                "config); the random C is stored as C~ for that length."
            )
        ),
        "stubbed_modules": stubbed,
        "randomization": RULES,
        "files": {"npz": os.path.basename(npz)},
    }
    if ref == "v4.1.0":  # what `sashimi.check` expects `interop check` to catch in this fixture
        side["known_defect"] = {
            "fails": ["published step"],
            "why": "v4.1.0's S4Block.step skips the GELU (fixed in commit 35cc242)",
        }
    return side


def main():
    args, T = parse_args()
    B, L, ref = args.batch, args.length, args.ref
    s4 = os.path.abspath(args.s4)
    os.makedirs(args.out, exist_ok=True)
    sys.path.insert(0, s4)
    stubbed = install_stubs()
    import torch
    import train  # noqa: F401  official SequenceLightningModule

    config, sd_np = randomized_model(s4, ref, args.seed)
    rng = np.random.default_rng([args.seed, 12345])
    tokens_np = rng.integers(0, 1 << P.BITS, size=(B, L), dtype=np.int64)
    tokens = torch.from_numpy(tokens_np)
    r = pipeline_runs(config, sd_np, tokens, T, s4)
    dyn = buffer_dynamics(config, ref)
    measured = measured_errors(config, sd_np, tokens, r)

    arrays = dict(sd_np)
    arrays["fixture/tokens"] = tokens_np
    arrays["fixture/logits_f64"] = r["logits64"].numpy()
    arrays["fixture/logits_f32"] = r["logits32"].numpy()
    arrays["fixture/step_dense_f64"] = r["step64"].numpy()
    stem = args.name or f"pipeline_{ref}"
    npz = os.path.join(args.out, f"{stem}.npz")
    np.savez_compressed(npz, **arrays)
    commit = args.commit or git_commit(s4)
    side = sidecar(args, T, commit, config, measured, r["buffers"], dyn, stubbed, npz)
    with open(os.path.join(args.out, f"{stem}.json"), "w") as f:
        json.dump(side, f, indent=1)
    if ref in ("v3.0.0", "v4") and not args.name:
        kj = keys_json(ref, s4)
        kj["commit"] = commit
        kj["torch_version"] = torch.__version__
        with open(os.path.join(args.out, f"sc09_{ref}_keys.json"), "w") as f:
            json.dump(kj, f, indent=1)

    print(json.dumps({"ref": ref, "measured": measured, "buffers": r["buffers"]}, indent=1))


if __name__ == "__main__":
    main()
