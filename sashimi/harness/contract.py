"""The contract report: the model's shapes and parameter counts, measured live, against specs/.

Per-stage output shapes (forward hooks on a small input), the parameter breakdown, every
exact spec (params.json, shapes.json) as an enforced verdict, and every claim of the original
design note (claims.json) as a reported one.
"""

import functools
import json
import math

import torch

import specs
from sashimi.core.config import ModelConfig, model_config, preset_names
from sashimi.harness.recipe import recipe_lines
from sashimi.harness.verdict import Verdict
from sashimi.harness.verdict import print_report as print_verdicts
from sashimi.model.lm import Decoder, SashimiLM


def submodule(model: torch.nn.Module, path: str) -> torch.nn.Module:
    module = model.get_submodule(path)
    return module[-1] if isinstance(module, torch.nn.ModuleList) else module


def shape_env(config: ModelConfig, B: int, L: int) -> dict:
    P1, P2 = config.pool
    return {"B": B, "L": L, "d": config.d_model, "E": config.expand, "C": config.n_classes, "P1": P1, "P2": P2}


def evaluate_shape(symbols: list[str], env: dict) -> tuple[int, ...]:
    # the expressions come from our own specs/shapes.json: arithmetic on named sizes only
    return tuple(int(eval(s, {"__builtins__": {}}, env)) for s in symbols)


def measured_shapes(model: SashimiLM, B: int, L: int) -> dict[str, tuple[int, ...]]:
    """Output shape of every stage of specs/shapes.json, by forward hooks on one small input."""
    shapes, handles = {}, []
    tokens = torch.randint(0, model.config.n_classes, (B, L))
    shapes["tokens"] = tuple(tokens.shape)
    for stage in specs.load("shapes")["stages"]:
        if stage["module"] is None:
            continue

        def hook(module, args, output, name=stage["stage"]):
            shapes[name] = tuple(output.shape)

        handles.append(submodule(model, stage["module"]).register_forward_hook(hook))
    with torch.no_grad():
        model(tokens)
    for h in handles:
        h.remove()
    return shapes


def shape_lines(model: SashimiLM, B: int = 2) -> tuple[list[Verdict], list[tuple[str, tuple, int]]]:
    config = model.config
    L = 4 * math.prod(config.pool)
    env = shape_env(config, B, L)
    measured = measured_shapes(model, B, L)
    lines, table = [], []
    for stage in specs.load("shapes")["stages"]:
        expected = evaluate_shape(stage["shape"], env)
        got = measured.get(stage["stage"])
        module = submodule(model, stage["module"]) if stage["module"] else None
        params = sum(p.numel() for p in module.parameters()) if module is not None else 0
        table.append((stage["stage"], got, params))
        lines.append(
            Verdict(
                "shape",
                f"{stage['stage']} (B={B}, L={L})",
                fmt_shape(got),
                "(" + ", ".join(stage["shape"]) + ")",
                got == expected,
            )
        )
    for mode in specs.load("shapes")["decoder_modes"]:
        decoder_model = Decoder(config.d_model, config.n_classes, mode["l_output"])
        decoder_model.load_state_dict(model.decoder.state_dict())
        with torch.no_grad():
            got = tuple(decoder_model(torch.zeros(B, L, config.d_model)).shape)
        expected = evaluate_shape(mode["shape"], env)
        lines.append(
            Verdict(
                "shape",
                f"decoder l_output={mode['l_output']}",
                fmt_shape(got),
                "(" + ", ".join(mode["shape"]) + ")",
                got == expected,
            )
        )
    return lines, table


def param_breakdown(model: SashimiLM) -> dict[str, int]:
    """Parameter counts by component, in the style of the note's breakdown."""
    counts = {"encoder (Embedding)": model.num_params("encoder")}
    backbone = model.backbone
    for i, pool in enumerate(backbone.d_layers):
        counts[f"DownPool {i + 1}"] = sum(p.numel() for p in pool.parameters())

    def stage(blocks, label):
        s4 = sum(p.numel() for b in blocks if hasattr(b.layer, "layer") for p in b.parameters())
        ff = sum(p.numel() for b in blocks if not hasattr(b.layer, "layer") for p in b.parameters())
        counts[f"{label} S4 blocks"] = s4
        counts[f"{label} FF blocks"] = ff

    stage(list(backbone.c_layers), "centre")
    for k, (up, *blocks) in enumerate(backbone.u_layers):
        counts[f"UpPool {k + 1}"] = sum(p.numel() for p in up.parameters())
        stage(blocks, f"up {k + 1}")
    counts["final LayerNorm"] = sum(p.numel() for p in backbone.norm.parameters())
    counts["decoder (Linear)"] = model.num_params("decoder")
    return counts


def categories(model: SashimiLM) -> dict[str, int]:
    """The note's 'what dominates' categories."""
    out = dict.fromkeys(["ff_linears", "s4_output_linears", "pool_linears", "s4_C", "centre_stage"], 0)
    for name, p in model.backbone.named_parameters():
        if ".ff." in name:
            out["ff_linears"] += p.numel()
        elif "output_linear" in name:
            out["s4_output_linears"] += p.numel()
        elif name.endswith("linear.weight") or name.endswith("linear.bias"):
            out["pool_linears"] += p.numel()
        elif name.endswith("kernel.C"):
            out["s4_C"] += p.numel()
        if name.startswith("c_layers."):
            out["centre_stage"] += p.numel()
    return out


def weight_norm_gains(model: SashimiLM) -> int:
    """The pipeline's extra parameters: its pool linears are weight-normed, holding a gain g per
    output row beside v (we hold the folded W)."""
    pools = [*model.backbone.d_layers, *(stage[0] for stage in model.backbone.u_layers)]
    return sum(pool.linear.out_features for pool in pools)


@functools.cache  # mutate: skip a cache: without it the same counts, built again
def measured_counts(preset_name: str, bits: int, overrides: str) -> dict:
    """Parameter counts of one configuration (`overrides`: ModelConfig fields as JSON). Built once per
    process: counts follow from the code and the configuration alone, and a paper-size model takes
    seconds to build (the gate, `specs` and their tests ask for the same ones many times)."""
    model = SashimiLM(model_config(preset_name, bits, **json.loads(overrides)))
    parts = {part: model.num_params(part) for part in ("backbone", "encoder", "decoder")}
    return {**parts, "total": model.num_params(), "weight_g": weight_norm_gains(model), "categories": categories(model)}


def param_lines() -> list[Verdict]:
    data = specs.load("params")
    lines = []
    for entry in data["exact"]:
        overrides = json.dumps(entry["model"], sort_keys=True)  # mutate: skip sort_keys: the cache key's order
        counts = measured_counts(entry["preset"], entry["bits"], overrides)
        for part in ("backbone", "encoder", "decoder", "total"):
            if part in entry:
                got = counts[part]
                lines.append(
                    Verdict("params", f"{entry['name']}: {part}", str(got), str(entry[part]), got == entry[part])
                )
        if "published_total" in entry:
            got = counts["total"] + counts["weight_g"]
            lines.append(
                Verdict(
                    "params",
                    f"{entry['name']}: published count (+ weight_g of the pool linears)",
                    str(got),
                    str(entry["published_total"]),
                    got == entry["published_total"],
                )
            )
    documented = data["breakdown_documented"]
    measured = measured_counts("sc09", 8, "{}")["categories"]  # mutate: skip 9: the backbone's, the same at any bits
    for key, got in measured.items():
        want = documented[key]
        holds = abs(got - want) <= documented["rel_tol"] * want
        lines.append(Verdict("params", f"paper model breakdown: {key} (rounded to 0.01M)", str(got), str(want), holds))
    return lines


def claim_measure(claim: dict):
    measure = claim["measure"]
    if measure == "total_params":
        return SashimiLM(model_config(claim["preset"], claim["bits"])).num_params()
    if measure == "pipeline_final_act_id_params":
        model = SashimiLM(model_config(claim["preset"], claim["bits"], norm="scalar", s4_output="linear"))
        return model.num_params() + weight_norm_gains(model)
    if measure == "logit_bytes_per_position":
        model = SashimiLM(model_config("tiny", claim["bits"]))
        L = math.prod(model.config.pool)
        with torch.no_grad():
            logits = model(torch.zeros(1, L, dtype=torch.long))
        return logits.numel() * logits.element_size() // L
    if measure == "training_logits_rank":
        model = SashimiLM(model_config("tiny", 8))
        with torch.no_grad():
            shape = model(torch.zeros(2, math.prod(model.config.pool), dtype=torch.long)).shape
        return "B L C" if len(shape) == 3 else "B C"
    if measure == "preset_lrs":
        return sorted({specs.load("presets")[p]["train"]["lr"] for p in preset_names()})
    if measure == "sixteen_bit_presets":
        return [p for p in preset_names() if specs.load("presets")[p]["train"]["bits"] == 16]
    raise ValueError(f"unknown claim measure {measure!r}")


def claim_holds(claim: dict, measured) -> bool:
    documented = claim["documented"]
    if claim["measure"] == "preset_lrs":
        return documented in measured
    if claim["measure"] == "sixteen_bit_presets":
        return len(measured) > 0
    if isinstance(documented, str):
        return documented == measured
    return abs(measured - documented) <= claim["rel_tol"] * documented


def claim_lines() -> list[Verdict]:
    lines = []
    for claim in specs.load("claims")["claims"]:
        measured = claim_measure(claim)
        holds = claim_holds(claim, measured)
        comment = claim["comment"]
        if holds != claim["expected_verdict"]:
            comment += ' [verdict differs from docs/DESIGN.md, "The design note\'s claims"]'
        lines.append(
            Verdict(
                "claim", claim["claim"], str(measured), str(claim["documented"]), holds, enforced=False, comment=comment
            )
        )
    return lines


def fmt_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")" if shape is not None else "missing"


def report(preset: str, bits: int, log=None) -> dict:
    """The contract report; `log` is told each part as it starts (every preset is built: seconds)."""
    log = log or (lambda message: None)
    log(f"[1/3] shapes of the {preset} {bits}-bit model")
    model = SashimiLM(model_config(preset, bits))
    shapes, table = shape_lines(model)
    log("[2/3] parameter counts of every preset")
    params = param_lines()
    log("[3/3] the design note's claims")
    lines = shapes + params + claim_lines()
    recipe = recipe_lines(preset)
    breakdown = param_breakdown(model)
    return {
        "preset": preset,
        "bits": bits,
        "config": model.config.to_dict(),
        "params": {
            "total": model.num_params(),
            "backbone": model.num_params("backbone"),
            "encoder": model.num_params("encoder"),
            "decoder": model.num_params("decoder"),
            "components": breakdown,
        },
        "shape_table": [{"stage": s, "shape": list(shape) if shape else None, "params": p} for s, shape, p in table],
        "specs": [line.as_dict() for line in lines],
        "recipe": [line.as_dict() for line in recipe],
        "ok": not any(line.failed for line in lines + recipe),
    }


def print_report(r: dict) -> None:
    print(f"SaShiMi {r['bits']}-bit, preset {r['preset']}: {r['config']}")
    print("\nTensor shape summary (measured, B=2, L=4*prod(pool))")
    for row in r["shape_table"]:
        print(f"  {row['stage']:<44s} {fmt_shape(row['shape']):<18s}")
    print("\nParameter count breakdown")
    for name, n in r["params"]["components"].items():
        print(f"  {name:<44s} {n:>12,d}")
    print(f"  {'total':<44s} {r['params']['total']:>12,d}")
    print("\nSpecs (measured vs documented; claims of the design note are reported as notes, never enforced)")
    if r["recipe"]:
        print(
            f"  (then the training recipe: preset {r['preset']}'s value beside the official experiment's, "
            "specs/official_recipes.json; "
            "a difference passes only with its reason in specs/recipes.json)"
        )
    print_verdicts(Verdict(**line) for line in r["specs"] + r["recipe"])
