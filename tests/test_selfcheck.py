"""python -m sashimi.selfcheck: a fresh layer's step against its convolution, in both precisions."""

import re

import torch

from sashimi import selfcheck


def test_selfcheck_names_both_precisions_and_passes_at_an_odd_width(capsys):
    """Three channels (one tied state for all: any width works) over 20 samples; each precision's
    line names it as the tolerance table does (float64, not torch.float64)."""
    assert selfcheck.main(["--channels", "3", "--length", "20", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    for precision in ("float64", "float32"):
        assert f"S4 layer H=3 N=64 L=20 {precision} step vs convolution" in out
    assert "torch." not in out and "2 of 2 checks pass" in out
    seconds = [float(x) for x in re.findall(r"step vs convolution \(([0-9.]+) s\)", out)]
    assert len(seconds) == 2 and all(0 <= s < 60 for s in seconds)  # each check's own time, not a clock reading


def test_the_agreement_is_the_relative_gap_between_the_two_paths():
    """Recomputed here from a layer built the same way (seed, tied state): max |step - conv| / max |conv|."""
    from sashimi.core.config import S4Options
    from sashimi.model.rollout import rollout
    from sashimi.model.s4 import S4Layer

    torch.manual_seed(2)
    layer = S4Layer(5, S4Options(n_ssm=1)).double()
    u = torch.randn(2, 30, 5, dtype=torch.float64)
    with torch.no_grad():
        conv = layer(u)
        want = float((rollout(layer, u) - conv).abs().max() / conv.abs().max())
    assert selfcheck.agreement(5, 30, torch.float64, 2) == want and 0 < want < 1e-10
