"""The mutation run's children and stops: every child forgotten once it ends, SIGTERM and Ctrl-C
ending the children before the run reports, the handlers given back, and the template committed
quietly under its own name on a machine with no git identity."""

import signal
import subprocess
import threading
import time

import pytest

from sashimi import mutate
from sashimi.harness import mutation
from sashimi.harness.catalogue_types import Mutant
from sashimi.harness.plan import text_job
from sashimi.harness.runner import line_of


def test_a_child_is_forgotten_once_it_ends(tmp_path):
    mutation.child(["true"], tmp_path)
    with pytest.raises(subprocess.TimeoutExpired):
        mutation.child(["sleep", "5"], tmp_path, timeout=0.2)
    # a finished child left in LIVE would have its (reusable) process group killed by a later stop
    assert mutation.LIVE == set()


def test_sigterm_ends_the_children_and_interrupts_the_run(tmp_path):
    started = tmp_path / "started"
    script = ["sh", "-c", f"touch {started}; sleep 30"]
    finished = {}
    thread = threading.Thread(target=lambda: finished.update(done=mutation.child(script, tmp_path)))
    thread.start()
    while not started.exists():
        time.sleep(0.02)
    try:
        with pytest.raises(KeyboardInterrupt):
            mutation._stop(signal.SIGTERM, None)  # the handler `stoppable` installs
        thread.join(10)
        assert finished["done"].returncode == -signal.SIGKILL
        assert mutation.STOPPING.is_set()
    finally:
        mutation.STOPPING.clear()


def test_a_stoppable_run_starts_children_after_an_earlier_stop_and_gives_the_handlers_back(tmp_path):
    def mine(signum, frame):
        pass

    before, interrupt = signal.signal(signal.SIGTERM, mine), signal.getsignal(signal.SIGINT)
    try:
        mutation.STOPPING.set()  # an earlier run in this process was stopped
        with mutation.stoppable():
            assert signal.getsignal(signal.SIGTERM) is mutation._stop
            assert signal.getsignal(signal.SIGINT) is mutation._stop
            assert mutation.child(["true"], tmp_path).returncode == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is interrupt
    finally:
        signal.signal(signal.SIGTERM, before)
        mutation.STOPPING.clear()


def test_the_template_is_committed_quietly_where_git_has_no_identity(tmp_path, monkeypatch, capfd):
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / "a.py").write_text("x = 1\n")
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tuseConfigOnly = true\n")  # git may not guess a name from the host
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    capfd.readouterr()
    mutation.make_template(tmp_path / "template", project)
    assert capfd.readouterr() == ("", "")
    log = subprocess.run(
        ["git", "log", "--format=%an %ae %cn %ce"], cwd=tmp_path / "template", capture_output=True, text=True
    )
    assert log.stdout.split() == ["mutate", "mutate@localhost", "mutate", "mutate@localhost"]


def test_a_catalogue_entry_is_reported_at_its_line_without_a_column(tmp_path):
    (tmp_path / "step.cpp").write_text("int f() {\n  return 1 + 2;\n}\n")
    job = text_job(Mutant("plus", "step.cpp", "f()", "1 + 2", "1 - 2", "sign"), tmp_path)
    result = {"id": job.id, "file": job.file, "line": job.line, "column": job.column, "operator": job.operator}
    assert line_of(result | {"status": "survived", "killed": False, "killed_by": None}) == "step.cpp:2 sign: SURVIVED"


def test_a_git_failure_in_the_template_is_one_error_line_with_gits_reason(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "a.py"], cwd=project, check=True)
    me = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *me, "commit", "-q", "-m", "a"], cwd=project, check=True)
    monkeypatch.setenv("GIT_AUTHOR_DATE", "not a date")  # only a commit reads it
    with pytest.raises(RuntimeError, match=r"the template's `git commit .*` failed in .*: .*invalid date"):
        mutation.make_template(tmp_path / "template", project)
    assert mutate.main(["--diff", "HEAD", "--root", str(project)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("error:")] == [err[-1]]
    assert err[-1].startswith("error: the template's `git commit") and "invalid date format" in err[-1]
