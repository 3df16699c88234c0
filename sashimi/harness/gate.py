"""The pre-merge gate: every family of checks as verdicts.

  specs      exact parameter counts and per-stage shapes against specs/; the optimizer and
             schedule training builds against specs/presets.json
  golden     seeded float64 outputs against tests/golden/golden.npz (sashimi.harness.golden)
  identity   identities a change must keep: decoder slices, kernel cache, token range, clipping
  reference  the fast model against the float64 reference on random small configurations
  published  the published-weights fixtures (missing ones fail, unless allowed)
A family that raises is one failed verdict naming it, never a crash.
"""

import json
import os
from pathlib import Path

import numpy as np
import torch

import specs
from reference import layer as ref_layer
from reference import sashimi as ref_model
from sashimi.core.config import ModelConfig, TrainConfig, model_config
from sashimi.harness import contract, golden, published
from sashimi.harness.helpers import lm, numpy_state, tiny_config, tokens
from sashimi.harness.verdict import Verdict, compare
from sashimi.model.kernel import SSMKernel, kernel_cache
from sashimi.model.lm import SashimiLM
from sashimi.training.metrics import LossModel
from sashimi.training.optimizer import make_optimizer, optimization_step

SEED = golden.SEED
DEFAULT_FIXTURES = golden.ROOT / "tests" / "published"  # committed with the checkout (tools/README.md)


def spec_rows() -> list[Verdict]:
    rows = [line for line in contract.param_lines() if line.enforced]
    for bits in (8, 16):
        for line in contract.shape_lines(SashimiLM(model_config("tiny", bits)))[0]:
            line.name = f"{bits}-bit tiny: {line.name}"
            rows.append(line)
    return [Verdict("specs", r.name, r.measured, r.expected, r.passed) for r in rows]


def optimizer_rows() -> list[Verdict]:
    """The optimizer and schedule training builds, against specs/presets.json `optimizer`."""
    want = specs.load("presets")["optimizer"]
    optimizer, scheduler = make_optimizer(SashimiLM(tiny_config(8)), TrainConfig(preset="tiny", lr=0.004).resolved().lr)
    ssm = optimizer.param_groups[1]
    measured = {
        "betas": list(optimizer.defaults["betas"]),
        "weight_decay": optimizer.param_groups[0]["weight_decay"],
        "ssm_lr": ssm["lr"],
        "ssm_weight_decay": ssm["weight_decay"],
        "plateau_factor": scheduler.factor,
        "plateau_patience": scheduler.patience,
    }
    return [
        Verdict("specs", f"optimizer {key}", str(measured[key]), str(want[key]), measured[key] == want[key])
        for key in measured
    ]


def reference_rows(n: int = 3) -> list[Verdict]:
    """The fast model and one kernel against the float64 reference on random small configurations."""
    rows = []
    rng = np.random.default_rng(SEED)
    for i in range(n):
        config = ModelConfig(
            bits=8,
            d_model=int(rng.choice([2, 4])),
            n_layers=1,
            pool=[int(rng.choice([2, 4])), 2],
            expand=2,
            ff=int(rng.choice([0, 2])),
            n_ssm=[1, None][i % 2],
            d_state=int(rng.choice([2, 4, 6])),
        )  # mutate: skip the configurations drawn: correct code meets the reference at any of them
        model = lm(SEED + i, **config.to_dict())
        state = numpy_state(model)
        x = tokens(SEED + i, 2, 4 * int(np.prod(config.pool)), config.n_classes)
        with torch.no_grad():
            got = model(x)
        label = f"d_model={config.d_model}, pool={config.pool}, n_ssm={config.n_ssm}"
        rows.append(
            compare(  # mutate: skip swapped: the bound's scale from one of two values within tolerance
                got,
                ref_model.language_model(state, config.to_dict(), x.numpy()),
                "model_float64",
                "reference",
                f"whole model vs reference, random config {i} ({label})",
            )
        )
        prefix = next(name for name, m in model.named_modules() if isinstance(m, SSMKernel))
        sub = {"layer.kernel." + k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        with torch.no_grad():
            K = model.get_submodule(prefix)(17)
        rows.append(
            compare(  # mutate: skip swapped: the bound's scale from one of two values within tolerance
                K,
                ref_layer.s4_kernel(sub, 17),
                "kernel_float64",
                "reference",
                f"kernel vs reference, random config {i}",
            )
        )
    return rows


def identity_rows() -> list[Verdict]:
    """Decoder modes are slices of the full logits; a cached kernel follows an in-place parameter
    edit exactly as a recomputed one does; token C is refused; the training step clips."""
    rows = []
    model = lm(SEED, randomize=False, **tiny_config(8).to_dict()).eval()
    x = tokens(SEED, 2, 16, 256)
    with torch.no_grad():
        full = model(x)
        for l_output, expected in ((0, full[:, -1]), (3, full[:, -3:])):
            model.decoder.l_output = l_output
            # another GEMM shape: rounding only
            rows.append(
                compare(  # mutate: skip swapped: the bound's scale from one of two values within tolerance
                    model(x),
                    expected,
                    "model_float64",
                    "identity",
                    f"decoder l_output={l_output} == the last positions of l_output=None",
                )
            )
        model.decoder.l_output = None
        kernel = model.backbone.c_layers[0].layer.layer.kernel
        kernel(16)  # cached
        kernel.A_real.add_(0.1)
        cached = kernel(16)
        with kernel_cache(False):
            fresh = kernel(16)
    d = float((cached - fresh).abs().max())
    rows.append(
        Verdict("identity", "kernel cache follows an in-place parameter edit", f"max diff {d:.2e}", "0", d == 0.0)
    )
    try:
        model(torch.full((1, 16), 256))
        refused = "accepted"
    except ValueError:
        refused = "ValueError"
    except (
        Exception
    ) as e:  # let through by the range check, then failing deeper (the embedding): this row, not the family
        refused = f"accepted, then {type(e).__name__}"
    rows.append(
        Verdict(
            "identity", "token C = 256 of an 8-bit model is refused", refused, "ValueError", refused == "ValueError"
        )
    )
    return rows + clip_rows()


def clip_rows() -> list[Verdict]:
    """Training clips the gradient norm: one plain SGD step (lr 1) through the training step moves
    the parameters by exactly the clip when the gradient is larger."""
    model = lm(SEED, randomize=False, **tiny_config(8).to_dict())
    x = tokens(SEED, 2, 16, 256)
    with torch.no_grad():
        model(x)  # the first forward writes C~ into C (the published convention): not a training update
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimization_step(LossModel(model), model, torch.optim.SGD(model.parameters(), lr=1.0), x, x, grad_clip=1e-3)
    moved = float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())
    return [
        Verdict(
            "identity",
            "training step clips the gradient norm (SGD, lr 1, clip 1e-3)",
            f"{moved:.6e}",
            "1e-03",
            abs(moved - 1e-3) <= 1e-8,  # mutate: skip <: equal only on a set of measure zero
        )
    ]


def fixtures_folder(fixtures: Path | None) -> tuple[Path, str]:
    """--fixtures, else SASHIMI_FIXTURES, else tests/published of the checkout; with where it came from."""
    if fixtures:
        return fixtures, "--fixtures"
    if "SASHIMI_FIXTURES" in os.environ:
        return Path(os.environ["SASHIMI_FIXTURES"]), "SASHIMI_FIXTURES"
    return DEFAULT_FIXTURES, "the checkout"


def published_rows(fixtures: Path | None, allow_missing: bool = False) -> list[Verdict]:
    """Every published fixture's rows. No fixture found is a failed row naming the folder: the rows
    it would have given must not vanish. `allow_missing` turns that into a skip, but only for the
    default folder: a folder named on purpose (--fixtures, SASHIMI_FIXTURES) that is missing is an error."""
    folder, source = fixtures_folder(fixtures)
    paths = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not paths:
        measured = "folder not found" if not folder.is_dir() else "no *.npz in the folder"
        excused = allow_missing and source == "the checkout"
        return [
            Verdict(
                "published",
                f"published fixtures in {folder} (from {source})",
                measured,
                "a folder of *.npz fixtures",
                None if excused else False,
            )
        ]
    rows = []
    for path in paths:
        sidecar = path.with_suffix(".json")
        defect = json.loads(sidecar.read_text()).get("known_defect") if sidecar.is_file() else None
        rows += published.check(path) if defect is None else [caught(path, defect)]
    return rows


def caught(path: Path, defect: dict) -> Verdict:
    """A fixture of a published release with a known defect: `interop check` must fail on exactly the
    rows naming it (e.g. "published step") and pass the rest."""
    results = published.check(path)
    failed = [r.name for r in results if r.failed]
    expected = [r.name for r in results if any(word in r.name for word in defect["fails"])]
    holds = bool(failed) and failed == expected
    return Verdict(
        "published",
        f"{path.stem}: known defect caught ({defect['why']})",
        f"{len(failed)} rows fail",
        f"{len(expected)} rows naming {defect['fails']}",
        holds,
    )


def guarded(group: str, make_rows) -> list[Verdict]:
    try:
        return make_rows()
    except Exception as e:  # report, do not crash: the failing family is named
        return [
            Verdict(
                group,
                f"{group} checks",
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                "computed without error",
                False,
            )
        ]


def golden_family() -> list[Verdict]:
    errors: dict[str, str] = {}
    measured = golden.golden_outputs(errors)
    return golden.golden_rows(measured, golden.read(), errors)


# each family by name, in the order the gate prints them (`python -m sashimi.check --only NAME`)
FAMILIES = {
    "specs": lambda fixtures, allow: guarded("specs", spec_rows) + guarded("specs", optimizer_rows),
    "golden": lambda fixtures, allow: golden_family(),
    "identity": lambda fixtures, allow: guarded("identity", identity_rows),
    "reference": lambda fixtures, allow: guarded("reference", reference_rows),
    "published": lambda fixtures, allow: guarded("published", lambda: published_rows(fixtures, allow)),
}


def run(
    fixtures: Path | None = None,
    only: list[str] | None = None,
    log=None,
    allow_missing_fixtures: bool = False,
    exitfirst: bool = False,
) -> list[Verdict]:
    """Every verdict of the gate against the committed golden file (or of the families in `only`);
    `log` is told each family as it starts (the gate takes a minute or more on a busy CPU);
    `allow_missing_fixtures` skips, rather than fails, published fixtures absent from the checkout;
    `exitfirst` stops after the first family with a failure (what a mutation run needs to know)."""
    unknown = set(only or []) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown gate families {sorted(unknown)}; expected some of {list(FAMILIES)}")
    chosen = [name for name in FAMILIES if only is None or name in only]
    say = log or (lambda stage: None)
    rows: list[Verdict] = []
    for i, name in enumerate(chosen, 1):
        say(f"[{i}/{len(chosen)}] {name}")
        rows += FAMILIES[name](fixtures, allow_missing_fixtures)
        if exitfirst and any(row.failed for row in rows):
            break
    return rows
