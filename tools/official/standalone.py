"""The official standalone SaShiMi (models/sashimi/sashimi.py + models/s4/s4.py of state-spaces/s4):
extracted and verified from a git dir, imported, and run forward, in float64 and in every step mode."""

import contextlib
import copy
import hashlib
import io
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

COMMIT = "e757cef57d89e448c413de7325ed5601aceaac13"
CONSTRUCTOR_KWARGS = {
    "d_model": 16,
    "n_layers": 2,
    "pool": [4, 4],
    "expand": 2,
    "ff": 2,
    "bidirectional": False,
    "unet": False,
    "dropout": 0.0,
}
IMPLIED_S4_KWARGS = (
    "S4Block(d_model=dim, d_state=64 (hard-coded in Sashimi.s4_block), bidirectional=False, dropout=0.0, "
    "transposed=True, **s4_args); "
    "S4Block defaults: final_act=glu, activation=gelu (in FFTConv), mode=dplr, init=legs, rank=1, dt_min=1e-3, "
    "dt_max=1e-1, "
    "dt_transform=exp, real_transform=exp, imag_transform=none, l_max=None"
)


def extract_official(s4_root: Path, git_dir: Path, commit: str) -> str:
    full = subprocess.run(
        ["git", "--git-dir", str(git_dir), "rev-parse", commit], check=True, capture_output=True, text=True
    ).stdout.strip()
    if not (s4_root / "models" / "sashimi" / "sashimi.py").is_file():
        s4_root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "--git-dir", str(git_dir), "archive", full, "models"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(s4_root)], input=archive, check=True)
    return full


def verify_tree(s4_root: Path, git_dir: Path, commit: str) -> dict:
    """sha256 of the two official files; raises if they differ from the blobs at `commit`."""
    hashes = {}
    for rel in ("models/sashimi/sashimi.py", "models/s4/s4.py"):
        here = (s4_root / rel).read_bytes()
        if git_dir.is_dir():
            there = subprocess.run(
                ["git", "--git-dir", str(git_dir), "show", f"{commit}:{rel}"], check=True, capture_output=True
            ).stdout
            if here != there:
                raise SystemExit(f"{s4_root / rel} differs from {rel} at {commit}")
        hashes[rel] = hashlib.sha256(here).hexdigest()
    return hashes


def import_official(s4_root: Path):
    try:
        import pytorch_lightning.utilities  # noqa: F401
    except ImportError:
        pl = types.ModuleType("pytorch_lightning")
        utilities = types.ModuleType("pytorch_lightning.utilities")
        utilities.rank_zero_only = lambda fn: fn
        pl.utilities = utilities
        sys.modules["pytorch_lightning"] = pl
        sys.modules["pytorch_lightning.utilities"] = utilities
    sys.path.insert(0, str(s4_root))
    from models.sashimi.sashimi import Sashimi  # noqa: E402

    return Sashimi


def s4_paths(model) -> list[str]:
    """Paths of the S4 blocks (e.g. 'c_layers.0.layer'), in state-dict order."""
    suffix = ".layer.kernel.l_kernel"
    return [k[: -len(suffix)] for k in model.state_dict() if k.endswith(suffix)]


def kernels(model, paths, l_kernels) -> dict:
    with torch.no_grad():
        return {p: model.get_submodule(p).layer.kernel(L=l_kernels[p])[0] for p in paths}


def step_run(model, x, mode):
    """deepcopy(model).setup_rnn(mode); teacher-forced step over x; (y (B, L, H), captured stdout)."""
    m = copy.deepcopy(model)
    out = io.StringIO()
    with torch.no_grad(), contextlib.redirect_stdout(out):
        m.setup_rnn(mode)
        state = m.default_state(x.shape[0])
        ys = []
        for t in range(x.shape[1]):
            y, state = m.step(x[:, t], state)
            ys.append(y)
    return torch.stack(ys, dim=1), out.getvalue().strip(), m


def maxabs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def build(Sashimi, kwargs: dict, B: int, L: int, seed: int):
    torch.manual_seed(seed)
    model = Sashimi(**kwargs)
    model.eval()
    x = torch.randn(B, L, kwargs["d_model"])  # global RNG, immediately after construction
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        y_conv = model(x)[0]  # first forward: every S4 kernel runs _setup_C(L_stage)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    changed = [k for k in state if not torch.equal(state[k], before[k])]

    paths = s4_paths(model)
    l_kernels = {p: int(state[f"{p}.layer.kernel.l_kernel"]) for p in paths}
    k32 = kernels(model, paths, l_kernels)

    # float64: a fresh model, given the saved (post-forward, C~) float32 weights, cast to double
    # before any forward, so no float32 FFT node is ever cached in it and every step runs in float64
    model64 = Sashimi(**kwargs)
    model64.load_state_dict(state, strict=True)
    model64 = model64.double().eval()
    with torch.no_grad():
        y64 = model64(x.double())[0]
    k64 = kernels(model64, paths, l_kernels)
    assert all(int(model64.state_dict()[f"{p}.layer.kernel.l_kernel"]) == l_kernels[p] for p in paths)

    # a float64 copy that keeps the float32 model's cached complex64 FFT nodes (omega, z)
    mixed = copy.deepcopy(model).double()
    with torch.no_grad():
        y_mixed = mixed(x.double())[0]

    steps, stdout, dense = {}, {}, None
    for mode in ("dense", "diagonal", "linear"):
        steps[mode], stdout[mode], m = step_run(model, x, mode)
        if mode == "dense":
            dense = m

    # kernel check from the dense step matrices of the first S4 kernel (not saved: 2 MB)
    first = paths[0]
    kern = dense.get_submodule(first).layer.kernel
    dA, dB, dC = kern.dA.detach(), kern.dB.detach(), kern.dC.detach()  # (H,2N,2N) (H,2N) (1,H,2N)
    v, Ks = dB.clone(), []
    for _ in range(l_kernels[first]):
        Ks.append(torch.einsum("hn,hn->h", dC[0], v).real)
        v = torch.einsum("hmn,hn->hm", dA, v)
    kernel_check = maxabs(torch.stack(Ks, -1).numpy(), k32[first][0].numpy())

    return dict(
        model=model,
        x=x,
        y_conv=y_conv,
        before=before,
        state=state,
        changed=changed,
        paths=paths,
        l_kernels=l_kernels,
        k32=k32,
        y64=y64,
        k64=k64,
        y_mixed=y_mixed,
        steps=steps,
        stdout=stdout,
        kernel_check=kernel_check,
        dense_shapes={"dA": list(dA.shape), "dB": list(dB.shape), "dC": list(dC.shape)},
    )


def arrays_of(r: dict, keep_float32_outputs: bool = False) -> dict:
    a = {k: v.numpy() for k, v in r["state"].items()}
    for k in r["changed"]:
        a["init." + k] = r["before"][k].numpy()
    a["x_input"] = r["x"].numpy()
    if keep_float32_outputs:
        a["y_conv"] = r["y_conv"].numpy()
    a["kernel_first_s4"] = r["k32"][r["paths"][0]].numpy()
    if keep_float32_outputs:
        a["y_step_dense"] = r["steps"]["dense"].numpy()
    a["y_conv_float64"] = r["y64"].numpy()
    for p in r["paths"]:
        a[f"kernel_float64.{p}"] = r["k64"][p].numpy()
    return a
