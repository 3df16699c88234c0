"""python -m sashimi.mutate: does the harness catch real bugs? A catalogue of realistic mutants.

Each mutant replaces one exact piece of `sashimi/` source (it must occur exactly once, or the
mutant is reported stale). It is applied alone, in a temporary copy of this checkout; there
the fast suite runs with `-x` (`pytest -x -m "not slow"`), and `python -m sashimi.check`
runs too. A mutant is killed when the suite fails; the report names the first failing test
and the first failing check. Run from a source checkout (tests/ beside sashimi/).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    find: str
    replace: str
    what: str


CATALOGUE = [
    Mutant("uppool-no-shift", "sashimi/pool.py", "x = F.pad(x[:, :-1], (0, 0, 1, 0))", "x = x", "UpPool without the causal one-step shift"),
    Mutant("uppool-step-late", "sashimi/pool.py", "return [zeros] * self.pool", "return [zeros] * (self.pool + 1)", "step-mode UpPool buffer emits one sample late"),
    Mutant("downpool-step-late", "sashimi/pool.py", "if len(state) < self.pool:", "if len(state) <= self.pool:", "step-mode DownPool buffer emits one sample late"),
    Mutant("downpool-reshape-order", "sashimi/pool.py", "return x.reshape(B, L // pool, pool, H).transpose(2, 3).reshape(B, L // pool, H * pool)",
           "return x.reshape(B, L // pool, H * pool)", "DownPool reshape order swapped (plain C-order reshape)"),
    Mutant("uppool-reshape-order", "sashimi/pool.py", "return x.reshape(B, L, HP // pool, pool).transpose(2, 3).reshape(B, L * pool, HP // pool)",
           "return x.reshape(B, L * pool, HP // pool)", "UpPool reshape order swapped"),
    Mutant("centre-skip-dropped", "sashimi/backbone.py", "            x = x + skips.pop()\n        idle_stages", "            skips.pop()\n        idle_stages",
           "skip connection around the centre dropped in step mode"),
    Mutant("stage-skip-dropped", "sashimi/backbone.py", "            x = x + stage_input\n        return self.norm(x)\n", "        return self.norm(x)\n",
           "skip connection around an up stage's blocks dropped"),
    Mutant("final-norm-dropped", "sashimi/backbone.py", "            x = x + stage_input\n        return self.norm(x)\n", "            x = x + stage_input\n        return x\n",
           "final LayerNorm dropped"),
    Mutant("prenorm-dropped", "sashimi/blocks.py", "return self.dropout(self.layer(self.norm(x), *extra))", "return self.dropout(self.layer(x, *extra))",
           "residual block without its pre-norm LayerNorm"),
    Mutant("ff-no-activation", "sashimi/blocks.py", "nn.Sequential(nn.Linear(H, H * expand), nn.GELU())", "nn.Sequential(nn.Linear(H, H * expand), nn.Identity())",
           "feed-forward block without its GELU"),
    Mutant("gelu-to-relu", "sashimi/s4.py", "return self.dropout(F.gelu(spectral_conv(u, K_f) + self.D * u))", "return self.dropout(F.relu(spectral_conv(u, K_f) + self.D * u))",
           "GELU replaced by ReLU in the S4 layer"),
    Mutant("D-dropped", "sashimi/s4.py", "return self.dropout(F.gelu(spectral_conv(u, K_f) + self.D * u))", "return self.dropout(F.gelu(spectral_conv(u, K_f)))",
           "the D u skip term dropped"),
    Mutant("conv-wrong-half", "sashimi/s4.py", "return torch.fft.irfft(u_f * K_f, n=2 * L, dim=1)[:, :L]", "return torch.fft.irfft(u_f * K_f, n=2 * L, dim=1)[:, L:]",
           "FFT convolution keeps the wrapped-around half (not causal)"),
    Mutant("woodbury-sign", "sashimi/kernel.py", "K_hat = torch.complex(c, s) * (rho[:, 0] - c * t)", "K_hat = torch.complex(c, s) * (rho[:, 0] + c * t)",
           "sign flipped in the Woodbury correction"),
    Mutant("Q-untied", "sashimi/kernel.py", "    Q = P.conj()\n    v = dt * torch.stack([C_tilde * B, C_tilde * P, Q * B, Q * P])\n    W = ",
           "    Q = P\n    v = dt * torch.stack([C_tilde * B, C_tilde * P, Q * B, Q * P])\n    W = ", "Q untied from P (Q = P instead of conj P)"),
    Mutant("pair-term-conj", "sashimi/kernel.py", "W = torch.cat([4 * v.real, -4 * (v * w.conj()).real])", "W = torch.cat([4 * v.real, -4 * (v * w).real])",
           "conjugate dropped in the conjugate-pair term of the Cauchy sum"),
    Mutant("step-conj-half-dropped", "sashimi/kernel.py", "(2 * C_full[:, : self.N2]).conj().resolve_conj()", "(C_full[:, : self.N2]).conj().resolve_conj()",
           "step mode drops the conjugate half of the state from the output (Re(C x) instead of 2 Re)"),
    Mutant("zoh-for-bilinear", "sashimi/kernel.py", "A_bar = torch.linalg.solve(left, I + half * A)", "A_bar = torch.linalg.matrix_exp(2 * half * A)",
           "zero-order hold in place of the bilinear A_bar (C~ conversion, dense step)"),
    Mutant("C-for-C-tilde", "sashimi/kernel.py", "            C_full = torch.linalg.solve((I - torch.linalg.matrix_power(A_bar, l)).mT, C_full)",
           "            C_full = C_full", "stored C~ used as C in step mode (the solve skipped)"),
    Mutant("doubling-sign", "sashimi/kernel.py", "C_full = ((I + torch.linalg.matrix_power(A_bar, l)).mT @ C_full[..., None])[..., 0]",
           "C_full = ((I - torch.linalg.matrix_power(A_bar, l)).mT @ C_full[..., None])[..., 0]", "C~ length doubling multiplies by (I - A^l) instead of (I + A^l)"),
    Mutant("dt-softplus", "sashimi/kernel.py", "dt = torch.exp(self.inv_dt)", "dt = torch.nn.functional.softplus(self.inv_dt)", "softplus in place of exp for Delta (the pipeline's, not the standalone's)"),
    Mutant("frequency-grid", "sashimi/kernel.py", "half = math.pi * k / L", "half = math.pi * k / (L + 1)", "kernel evaluated on the roots of unity of the wrong length"),
    Mutant("B-clip-dropped", "sashimi/kernel.py", "B_rot.imag.clamp(-B_clip, B_clip)", "B_rot.imag", "HiPPO init without the Im(B) clip"),
    Mutant("cache-ignores-edits", "sashimi/kernel.py", "(id(t), t._version, t.data_ptr(), t.dtype, t.device)", "(id(t), t.data_ptr(), t.dtype, t.device)",
           "kernel cache not invalidated by in-place parameter changes"),
    Mutant("glu-halves-swapped", "sashimi/s4.py", "self.output_linear = nn.Sequential(nn.Linear(H, 2 * H), nn.GLU(dim=-1))",
           "self.output_linear = nn.Sequential(nn.Linear(H, 2 * H), Flip(), nn.GLU(dim=-1))", "GLU value and gate halves swapped"),
    Mutant("l-output-slicing", "sashimi/model.py", "return self.output_transform(x[:, -self.l_output :])", "return self.output_transform(x[:, : self.l_output])",
           "decoder keeps the first k positions instead of the last k"),
    Mutant("token-range-off-by-one", "sashimi/model.py", "bad = (tokens < 0) | (tokens >= n_classes)", "bad = (tokens < 0) | (tokens > n_classes)",
           "token C accepted (range check off by one)"),
    Mutant("mulaw-off-by-one", "sashimi/quantize.py", "    return quantize_unit((e + 1) / 2, bits)\n",
           "    return (quantize_unit((e + 1) / 2, bits) + 1).clamp(max=2**bits - 1)\n", "mu-law tokens one level high"),
    Mutant("ssm-lr-global", "sashimi/train.py", '{"params": ssm, "lr": ssm_lr, "weight_decay": 0.0}', '{"params": ssm, "lr": lr, "weight_decay": 0.0}',
           "SSM parameter group given the global learning rate"),
    Mutant("plateau-factor", "sashimi/train.py", "mode=\"min\", factor=0.2, patience=20", "mode=\"min\", factor=0.5, patience=20", "plateau schedule factor 0.5 instead of 0.2"),
    Mutant("no-grad-clip", "sashimi/train.py", "        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)\n", "", "gradient clipping dropped"),
    Mutant("bpb-inverted", "sashimi/metrics.py", '"bpb": bits_per_sample / (self.bits / 8)', '"bpb": bits_per_sample * (self.bits / 8)', "bpb multiplied by bytes instead of divided"),
    Mutant("targets-not-shifted", "sashimi/data.py", "    x[1:n] = tokens[: n - 1]\n", "    x[:n] = tokens\n", "inputs not shifted by one against the targets"),
]


def source_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line and (ROOT / line).is_file()]


def make_copy(dest: Path) -> None:
    for name in source_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def apply(mutant: Mutant, tree: Path) -> str | None:
    """Apply in the copy; returns an error when the mutant no longer matches the source exactly once."""
    path = tree / mutant.file
    text = path.read_text()
    count = text.count(mutant.find)
    if count != 1:
        return f"stale: the text to replace occurs {count} times in {mutant.file}"
    text = text.replace(mutant.find, mutant.replace)
    if mutant.id == "glu-halves-swapped":
        text += "\n\nclass Flip(nn.Module):\n    def forward(self, x):\n        return torch.cat(x.chunk(2, dim=-1)[::-1], dim=-1)\n"
    path.write_text(text)
    return None


def environment(tree: Path, fixtures: Path | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "HYPOTHESIS_PROFILE": "ci", "PYTHONDONTWRITEBYTECODE": "1"}
    if fixtures is not None:
        env["SASHIMI_FIXTURES"] = str(fixtures)
    return env


# the broadest and quickest killers first, so that `-x` stops early
FIRST = ["test_check.py", "test_model.py", "test_kernel.py", "test_s4.py", "test_pool.py", "test_quantize.py", "test_data.py", "test_train.py"]


def ordered_tests(tree: Path) -> list[str]:
    files = sorted(p.name for p in (tree / "tests").glob("test_*.py"))
    return [f"tests/{name}" for name in [f for f in FIRST if f in files] + [f for f in files if f not in FIRST]]


def first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1).strip() if match else None


def run_mutant(mutant: Mutant, fixtures: Path | None, jobs: str, with_check: bool, timeout: int) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.id}-") as tmp:
        tree = Path(tmp)
        make_copy(tree)
        error = apply(mutant, tree)
        if error:
            return {"id": mutant.id, "what": mutant.what, "status": error, "killed_by": None, "check": None, "seconds": 0.0}
        env = environment(tree, fixtures)
        where = subprocess.run([sys.executable, "-c", "import sashimi; print(sashimi.__file__)"], cwd=tree, env=env, capture_output=True, text=True)
        if not where.stdout.strip().startswith(str(tree)):
            raise RuntimeError(f"the copy does not shadow the installed package: sashimi imports from {where.stdout.strip()}")
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider", "-n", jobs, *ordered_tests(tree)]
        try:
            tests = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
            output = tests.stdout + tests.stderr
            killed = tests.returncode != 0
            killer = first(r"^FAILED (\S+)", output) or first(r"^ERROR (\S+)", output) or (f"pytest exit {tests.returncode}" if killed else None)
        except subprocess.TimeoutExpired:
            killed, killer = True, f"timeout after {timeout} s"
        check_result = None
        if with_check:
            check = subprocess.run([sys.executable, "-m", "sashimi.check"] + (["--fixtures", str(fixtures)] if fixtures else []),
                                   cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
            output = check.stdout + check.stderr
            check_result = "passed" if check.returncode == 0 else (first(r"^FAILED: (.+?):\s*measured", output) or first(r"^(error: .+)$", output)
                                                                   or first(r"(\w+Error: .+)$", output) or f"exit {check.returncode}")
    return {"id": mutant.id, "what": mutant.what, "status": "killed" if killed else "SURVIVED", "killed_by": killer, "check": check_result,
            "seconds": round(time.perf_counter() - start, 1)}


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Mutation testing", "", "Each mutant is one realistic bug applied alone to a copy of `sashimi/`; the fast suite",
             "(`pytest -x -m \"not slow\"`) and `python -m sashimi.check` run against it. Reproduce with:", "", "```", command, "```", "",
             "One mutant: `python -m sashimi.mutate --only ID`; the catalogue: `python -m sashimi.mutate --list`.", "",
             "| mutant | bug | tests | first failing test | sashimi.check |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| `{r['id']}` | {r['what']} | {r['status']} | `{r['killed_by']}` | {r['check'] or '-'} |")
    killed = sum(r["status"] == "killed" for r in results)
    caught = sum(r["check"] not in (None, "passed") for r in results)
    lines += ["", f"{killed} of {len(results)} mutants killed by the tests; {caught} of {len(results)} make `sashimi.check` fail.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sashimi.mutate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument("--jobs", default="2", help="pytest-xdist workers per mutant (default 2)")
    parser.add_argument("--no-check", action="store_true", help="skip running sashimi.check on each mutant")
    parser.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "fixtures", help="published fixtures folder")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutant run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown (docs/MUTATION.md)")
    args = parser.parse_args(argv)
    if args.list:
        for m in CATALOGUE:
            print(f"{m.id:<26s} {m.file:<22s} {m.what}")
        return 0
    if not (ROOT / "tests").is_dir():
        print("error: run from a source checkout: tests/ not found beside sashimi/", file=sys.stderr)
        return 2
    chosen = [m for m in CATALOGUE if not args.only or m.id in args.only]
    unknown = set(args.only or []) - {m.id for m in CATALOGUE}
    if unknown:
        print(f"error: unknown mutant(s) {sorted(unknown)}; see --list", file=sys.stderr)
        return 2
    fixtures = args.fixtures if args.fixtures and args.fixtures.is_dir() else None
    results = []
    for i, mutant in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {mutant.id}: {mutant.what} ...", file=sys.stderr, flush=True)
        r = run_mutant(mutant, fixtures, args.jobs, not args.no_check, args.timeout)
        print(f"    {r['status']} by {r['killed_by']}; check: {r['check']} ({r['seconds']} s)", file=sys.stderr, flush=True)
        results.append(r)
    command = "python -m sashimi.mutate" + "".join(f" --only {m}" for m in (args.only or [])) + (" --no-check" if args.no_check else "")
    if args.markdown:
        args.markdown.write_text(markdown(results, command + f" --markdown {args.markdown}"))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            print(f"{r['id']:<26s} {r['status']:<9s} test: {r['killed_by']}  check: {r['check']}")
    survivors = [r for r in results if r["status"] != "killed"]
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
