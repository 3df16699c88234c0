"""The benchmark's command line."""

import json

import pytest

from sashimi import bench


def test_bench_help_exits_cleanly(capsys):

    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_bench_flags_parse_as_their_help_says():
    args = bench.make_parser().parse_args(["--quick", "--gen-steps", "5", "--compile", "off"])
    assert (args.quick, args.gen_steps, args.compile) == (True, 5, "off")
    defaults = bench.make_parser().parse_args([])
    assert defaults.quick is False and defaults.preset == bench.PRESET == "sc09" and defaults.compile == "auto"
    with pytest.raises(SystemExit):
        bench.make_parser().parse_args(["--compile", "fast"])


def test_against_runs_the_cases_asked_that_it_has():
    from sashimi.harness import against

    assert bench.against_cases(",".join(bench.CASES)) == list(against.CASES)
    mine, theirs = [c for c in bench.CASES if c not in against.CASES], list(against.CASES)
    assert bench.against_cases(",".join([*mine, theirs[-1]])) == [theirs[-1]]
    assert bench.against_cases(mine[0]) == []


def test_against_hands_the_run_what_was_asked(tmp_path, monkeypatch, capsys):
    from sashimi.harness import against
    from sashimi.sampling.sample import COMPILE_CHOICES

    (tmp_path / "models" / "sashimi").mkdir(parents=True)
    (tmp_path / "models" / "sashimi" / "sashimi.py").write_text("")
    asked = {}
    monkeypatch.setattr(against, "compare", lambda *a, **kw: asked.update(args=a, **kw) or {"ratio": 2.0})
    argv = ["--against", str(tmp_path), "--compile", "off", "--preset", "tiny", "--quick", "--cases", "gen_b1"]
    argv.append("--json")
    assert bench.main(argv) == 0
    assert asked["args"] == (tmp_path, 800, 2, 100, ["gen_b1"])
    assert asked["compile"] == COMPILE_CHOICES["off"] and asked["preset_name"] == "tiny"
    assert json.loads(capsys.readouterr().out) == {"ratio": 2.0}


FAKE_OFFICIAL = '''
"""Stands in for the official models/sashimi/sashimi.py: our backbone behind the official API."""
import torch
from sashimi.core.config import ModelConfig
from sashimi.model.backbone import Backbone


class Sashimi(Backbone):
    def __init__(self, n_ssm=None, **kwargs):
        super().__init__(ModelConfig(**kwargs, n_ssm=n_ssm))

    def setup_rnn(self, mode="dense"):
        self.setup_step()

    def default_state(self, batch):
        return super().default_state(batch)

    def forward(self, x):
        return super().forward(x), None
'''


@pytest.mark.slow  # six child processes (each imports torch and builds the tiny preset)
@pytest.mark.nightly  # 18 s: the bench's side-by-side runner, not a numeric property; make test keeps its 3 minutes
def test_against_times_both_sides_and_prints_ratios(tmp_path, capsys):
    """With a stand-in official checkout (our backbone behind its API), every case runs on both sides,
    each in its own process at each thread count, and the table and JSON carry the ratios."""
    import json

    (tmp_path / "models" / "sashimi").mkdir(parents=True)
    (tmp_path / "models" / "sashimi" / "sashimi.py").write_text(FAKE_OFFICIAL)
    assert (
        bench.main(
            [
                "--against",
                str(tmp_path),
                "--length",
                "64",
                "--repeats",
                "1",
                "--gen-steps",
                "4",
                "--cases",
                "fwd,gen_b1",
                "--compile",
                "off",
                "--preset",
                "tiny",
                "--json",
            ]
        )
        == 0
    )  # compiling is tested in tests/model/test_fused.py
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["cases"]) == {"fwd", "gen_b1"} and summary["preset"] == "tiny"
    assert (
        summary["cases"]["gen_b1"]["ours"]["threads"] in (1, 2) and summary["cases"]["fwd"]["official"]["threads"] == 2
    )
    for c in summary["cases"].values():
        assert c["ours"]["side"] == "ours" and c["official"]["side"] == "official"
        assert c["speedup"] == pytest.approx(c["official"]["median_s"] / c["ours"]["median_s"])
        assert c["ours"]["peak_gib"] > 0 and c["official"]["peak_gib"] > 0
    assert (
        summary["cases"]["gen_b1"]["ours"]["samples_per_s"] > 0 and "setup_s" in summary["cases"]["gen_b1"]["official"]
    )


def test_against_refuses_a_folder_that_is_not_the_official_checkout(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--against", str(tmp_path)])
    assert e.value.code == 2
    assert "not a checkout of state-spaces/s4" in capsys.readouterr().err
