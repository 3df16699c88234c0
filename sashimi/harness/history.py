"""Past real bugs, replayed on today's code: `python -m sashimi.mutate --replay`.

Each entry is a bug that once was in this repository (a fix commit's pre-fix behaviour) or is a
known defect of the official implementation that the suite models (docs/DESIGN.md, "Known defects
of the published code"). It is written back as a catalogue mutant, anchored by meaning
(`sashimi.harness.anchor`: a qualified name and a syntax-tree pattern), so that it re-applies to
today's code after reformatting, renames and moves, and shows which tests would catch it again.
An entry that no longer anchors is reported stale, never silently dropped.

The replacement reintroduces the old wrong behaviour in today's terms, not the old text: the
code around it has moved on since the fix.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from sashimi.harness.catalogue_types import Mutant
from sashimi.harness.mutation import Job


@dataclass(frozen=True)
class Bug:
    """A past bug: the mutant that brings it back, where it was fixed, and whose bug it was."""

    mutant: Mutant
    fixed_in: str  # our fix commit ("<short sha> <subject>"), or the official release and how it is modelled
    source: str  # "ours" or "official"


NATIVE = "sashimi/model/native_step.cpp"  # C++: `find` is exact text there (plan.text_job)
STEP_GELU = "state-spaces/s4 v4.1.0: S4Block.step skipped the GELU (fixed upstream in 35cc242)"

HISTORY = [
    # --- our fix commits: the pre-fix behaviour, written against today's code ---
    Bug(
        Mutant(
            "hist-every-rank-writes-data",
            "sashimi/training/data.py",
            "write_embedded_data",
            "not config.data and procs.is_main and not folder.exists()",
            "not config.data and not folder.exists()",
            "every process writes the embedded dataset (one lists a folder another is writing)",
            kills="tests/training/test_faults_data.py",
        ),
        "1284710 training/data.py: only the main process writes the embedded dataset (restore the condition)",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-closing-validation-steps-schedule",
            "sashimi/training/loop.py",
            "close_fit",
            "validate(run, val_set, procs, scheduled=False)",
            "validate(run, val_set, procs)",
            "a closing validation off the --eval-every cadence steps the plateau schedule",
            kills="tests/training/test_loop.py",
        ),
        "f717582 the closing validation of a run stopped off the --eval-every cadence no longer steps the "
        "plateau schedule (a resumed run diverged from a straight one)",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-hippo-phase-from-lapack",
            "sashimi/model/hippo.py",
            "hippo_legs_nplr",
            "V = V * (V[0].conj() / V[0].abs())",
            "",
            "HiPPO eigenvectors keep the phase LAPACK's eigh gives them (one seed, a different model per CPU)",
            kills="tests/model/test_hippo.py",
        ),
        "d8a255c HiPPO init: each eigenvector turned to a real, positive first entry, so a seed builds the "
        "same model on every CPU",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-wd-on-backbone-biases-norms",
            "sashimi/training/optimizer.py",
            "param_groups",
            "(rest if spec.weight_decay == 0 or decays(name, owners[id(p)]) else undecayed).append(p)",
            "rest.append(p)",
            "weight decay on the backbone's biases and norms (the official pipeline spares them)",
            kills="tests/training/test_optimizer.py",
        ),
        "7238cb3 weight decay spares the backbone's biases and norms as the pipeline's groups do",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-known-defect-fixture-checked-plainly",
            "sashimi/harness/gate.py",
            "published_rows",
            "rows += published.check(path) if defect is None else [caught(path, defect)]",
            "rows += published.check(path)",
            "the gate checks v4.1.0's fixture as a correct one (it fails on the defect it exists to show)",
            kills="tests/harness/test_gate.py",
        ),
        "ea24c0b check: a fixture of a release with a known defect (v4.1.0's step) is a row that passes only "
        "while interop check catches it",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-token-row-crashes-identity-family",
            "sashimi/harness/gate.py",
            "identity_rows",
            "try:\n    model(torch.full((1, 16), 256))\n    refused = 'accepted'\nexcept ValueError:\n"
            "    refused = 'ValueError'\nexcept Exception as e:\n    refused = f'accepted, then {type(e).__name__}'",
            "try:\n    model(torch.full((1, 16), 256))\n    refused = 'accepted'\nexcept ValueError:\n"
            "    refused = 'ValueError'",
            "a token let through the range check raises out of the identity family, hiding its other rows",
            kills="tests/harness/test_gate.py",
        ),
        "155a975 a token let through the range check fails its own row instead of hiding the rest of the "
        "identity family",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-missing-fixtures-skipped",
            "sashimi/harness/gate.py",
            "published_rows",
            "None if excused else False",
            "None",
            "no published fixtures found is a skip, not a failure (a clone without them passes check)",
            kills="tests/harness/test_gate.py",
        ),
        "d2f65d4 check: missing published fixtures fail with a row naming the folder",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-golden-errors-by-key-head",
            "sashimi/harness/golden.py",
            "golden_rows",
            "part_of(key) in errors",
            "key.split('/')[0] in errors",
            "a failed golden part is matched by its keys' first component (the data part's keys are not skipped)",
            kills="tests/harness/test_gate.py",
        ),
        "2d9cefc check: map golden keys to their part",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-summary-counts-notes-as-passes",
            "sashimi/harness/verdict.py",
            "summary",
            "sum(v.passed is True for v in verdicts)",
            "len(verdicts) - len(failed) - skipped",
            "the summary counts reported claims that do not hold (notes) as passing checks",
            kills="tests/harness/test_verdict.py",
        ),
        "4079b56 Verdict summary counts reported claims apart",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-silence-stretched",
            "sashimi/audio/quantize.py",
            "minmax_scale",
            "torch.where(silent, torch.full_like(x, (low + high) / 2),"
            " low + (high - low) * (x - lo) / (hi - lo + 1e-6))",
            "low + (high - low) * (x - lo) / (hi - lo + 1e-6)",
            "min-max scaling stretches a silent clip to full scale (all zeros become a constant at `low`)",
            kills="tests/audio/test_quantize.py",
        ),
        "cbbd484 training runs lose nothing: ... silence stays silent",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-checkpoint-mode-0600",
            "sashimi/io/checkpoint.py",
            "save",
            "os.chmod(tmp, 0o666 & ~_umask())",
            "",
            "checkpoints keep mkstemp's mode 0600 instead of the umask's",
            kills="tests/training/test_faults.py",
        ),
        "cbbd484 training runs lose nothing: ... checkpoints respect the umask",
        "ours",
    ),
    Bug(
        Mutant(
            "hist-import-any-sample-rate",
            "sashimi/interop.py",
            "run_import",
            "check_number('--sample-rate', args.sample_rate, *SAMPLE_RATE_RANGE)",
            "",
            "interop import accepts any --sample-rate (a negative rate reaches the written checkpoint)",
            kills="tests/test_errors.py",
        ),
        "ccd6534 interop import checks --sample-rate",
        "ours",
    ),
    # --- the official implementation's known defects, modelled on our code ---
    Bug(
        Mutant(
            "hist-s4-step-skips-gelu",
            "sashimi/model/s4.py",
            "S4Conv.step",
            "F.gelu(y + self.D[0] * u)",
            "y + self.D[0] * u",
            "the S4 layer's step skips its GELU (the convolution keeps it)",
            kills="tests/model/test_s4.py",
        ),
        f"{STEP_GELU} (modelled by the modules' own step, S4Conv.step)",
        "official",
    ),
    Bug(
        Mutant(
            "hist-s4-fused-step-skips-gelu",
            "sashimi/model/fused.py",
            "run_blocks",
            "F.gelu(y + take(flat, block.D) * u)",
            "y + take(flat, block.D) * u",
            "the fused step's S4 blocks skip their GELU",
            kills="tests/model/test_fused.py",
        ),
        f"{STEP_GELU} (modelled by the fused step generation runs)",
        "official",
    ),
    Bug(
        Mutant(
            "hist-s4-native-step-skips-gelu",
            NATIVE,
            "depth",
            "        gelu(y + r * H + h0, h1 - h0);",
            "",
            "the native step's S4 blocks skip their GELU",
            kills="tests/model/test_native.py",
        ),
        f"{STEP_GELU} (modelled by the native C++ step sample() runs on a CPU)",
        "official",
    ),
    Bug(
        Mutant(
            "hist-s4-diagonal-step-complex64",
            "sashimi/model/recurrence.py",
            "step_matrices",
            "dA = (T_inv @ A_bar @ T).real.to(dtype)",
            "lam, V = torch.linalg.eig(A_bar.to(torch.complex64))\n"
            "dA = (T_inv @ (V * lam[..., None, :] @ torch.linalg.inv(V)).to(A_bar.dtype) @ T).real.to(dtype)",
            "the dense step's A_bar rebuilt as V diag(lambda) V^-1 in complex64 (each mode alone)",
            kills="tests/model/test_recurrence.py",
        ),
        "state-spaces/s4: the 'diagonal' step mode (A_bar = V diag(lambda) V^-1 in complex64) is wrong at N = 64 "
        "in float32 (modelled by the dense oracle's step matrices built that way)",
        "official",
    ),
    Bug(
        Mutant(
            "hist-s4-double-keeps-cache",
            "sashimi/model/kernel.py",
            "SSMKernel._cache_key",
            "(id(t), t._version, t.data_ptr(), t.dtype, t.device)",
            "(id(t), t._version)",
            "the kernel cache survives .double() / .float() / .to() (keyed by identity and version only)",
            kills="tests/model/test_kernel.py",
        ),
        "state-spaces/s4 v3.0.0: .double() on a module that already ran keeps its complex64 caches "
        "(modelled by a kernel cache blind to dtype, storage and device)",
        "official",
    ),
]


def replay_jobs(root: Path) -> tuple[list[Job], dict[str, str]]:
    """Each bug applied to today's code under `root`, its text naming where it was fixed, and the
    stale entries (id -> why) whose anchor no longer names exactly one place."""
    # imported here: plan imports the catalogue and the operators, and must never need this module
    from sashimi.harness import anchor, plan

    jobs, stale = [], {}
    for bug in HISTORY:
        try:
            job = plan.catalogue_job(bug.mutant, root)
        except (anchor.Stale, SyntaxError) as e:
            stale[bug.mutant.id] = str(e)
            continue
        jobs.append(dataclasses.replace(job, operator=f"{bug.mutant.what} (fixed in {bug.fixed_in})"))
    return jobs, stale
