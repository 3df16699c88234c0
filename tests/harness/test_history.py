"""The replayed history (sashimi.harness.history): every past bug still anchors in today's code, its
id is its own, its job really changes the file, and for a few cheap ones the re-applied code
really behaves as the old bug did (run from the job's text, beside the unmutated text)."""

import ast
import importlib.util
import sys

import pytest

from sashimi.harness.catalogue import CATALOGUE
from sashimi.harness.history import HISTORY, replay_jobs
from sashimi.harness.mutation import ROOT


@pytest.fixture(scope="module")
def jobs():
    found, stale = replay_jobs(ROOT)
    assert not stale, f"history entries that no longer anchor: {stale}"
    return {job.id: job for job in found}


def test_every_entry_anchors_in_todays_code(jobs):
    assert set(jobs) == {bug.mutant.id for bug in HISTORY}


def test_ids_are_unique_and_apart_from_the_catalogue():
    ids = [bug.mutant.id for bug in HISTORY]
    assert len(ids) == len(set(ids))
    assert not set(ids) & {m.id for m in CATALOGUE}


def test_entries_say_whose_bug_and_where_it_was_fixed(jobs):
    assert len(HISTORY) >= 10
    assert {bug.source for bug in HISTORY} == {"ours", "official"}
    for bug in HISTORY:
        assert bug.fixed_in and bug.fixed_in in jobs[bug.mutant.id].operator
        if bug.source == "ours":  # a short sha of this repository's history, then the subject
            sha = bug.fixed_in.split()[0]
            assert len(sha) == 7 and int(sha, 16) >= 0, bug.fixed_in
        assert not bug.mutant.kills or (ROOT / bug.mutant.kills).is_file(), bug.mutant.kills


def test_each_job_changes_its_file_and_python_still_parses(jobs):
    for job in jobs.values():
        original = (ROOT / job.file).read_text()
        assert job.text != original, job.id
        if job.file.endswith(".py"):
            ast.parse(job.text)
            assert ast.dump(ast.parse(job.text)) != ast.dump(ast.parse(original)), job.id


def load(text: str, name: str):
    """A module run from `text` under its own name (the package's own copy stays as it is)."""
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        exec(compile(text, name, "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


def both(jobs, job_id: str):
    """The unmutated module and the one with the bug re-applied."""
    job = jobs[job_id]
    stem = job_id.replace("-", "_")
    return load((ROOT / job.file).read_text(), f"_fixed_{stem}"), load(job.text, f"_buggy_{stem}")


def test_replayed_summary_counts_a_note_as_a_pass(jobs):
    fixed, buggy = both(jobs, "hist-summary-counts-notes-as-passes")
    verdicts = [fixed.Verdict("g", "a", "1", "1", True), fixed.Verdict("g", "d", "3", "1", False, enforced=False)]
    assert fixed.summary(verdicts).startswith("1 of 2 checks pass")
    assert buggy.summary(verdicts).startswith("2 of 2 checks pass")


def test_replayed_minmax_scale_stretches_silence(jobs):
    import torch

    fixed, buggy = both(jobs, "hist-silence-stretched")
    silence = torch.zeros(1, 8)
    assert torch.equal(fixed.minmax_scale(silence, -1, 1), torch.zeros(1, 8))
    assert torch.equal(buggy.minmax_scale(silence, -1, 1), torch.full((1, 8), -1.0))


def test_replayed_hippo_init_follows_lapacks_phases(jobs, monkeypatch):
    """The bug was CPU-dependent: here eigh's eigenvectors are turned by other phases, as another
    LAPACK may return them; only the fixed init is the same model."""
    import torch

    fixed, buggy = both(jobs, "hist-hippo-phase-from-lapack")
    plain = [fixed.hippo_legs_nplr(8), buggy.hippo_legs_nplr(8)]
    eigh = torch.linalg.eigh

    def turned(a):
        w, v = eigh(a)
        phases = torch.exp(1j * torch.linspace(0.3, 2.9, v.shape[-1], dtype=torch.float64))
        return w, v * phases

    monkeypatch.setattr(torch.linalg, "eigh", turned)
    again = [fixed.hippo_legs_nplr(8), buggy.hippo_legs_nplr(8)]
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(plain[0], again[0]))
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain[1], again[1]))


def test_replayed_kernel_cache_survives_a_dtype_change(jobs):
    """v3.0.0's defect: after `.double()` a module that already ran answers from its float32 cache."""
    import torch

    for module, dtype in zip(both(jobs, "hist-s4-double-keeps-cache"), (torch.float64, torch.float32)):
        torch.manual_seed(0)
        kernel = module.SSMKernel(2, N=4, n_ssm=1)
        with torch.no_grad():
            kernel(8)
            assert kernel.double()(8).dtype == dtype


def test_every_entry_names_the_test_file_that_catches_it_first():
    """`kills` runs first in a replay, so that `pytest -x` stops at the bug's own test early."""
    assert [b.mutant.id for b in HISTORY if not b.mutant.kills or not (ROOT / b.mutant.kills).is_file()] == []


def test_an_entry_that_no_longer_anchors_is_stale_with_its_reason(tmp_path):
    jobs, stale = replay_jobs(tmp_path)  # a tree without the code: every entry is gone
    assert jobs == [] and sorted(stale) == sorted(bug.mutant.id for bug in HISTORY)
    assert all(("defined in 0 files" in why) or ("is not in" in why) for why in stale.values()), stale
