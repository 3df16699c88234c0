"""Which tests execute which lines, read back from coverage data written here; the order tests
run in; the modules an import names."""

from pathlib import Path

from coverage import CoverageData

from sashimi.harness.selection import EVERYTHING, Coverage, _imports, _read, _test_context, mirror


def test_a_line_run_at_import_time_reaches_every_test_unless_asked_for_the_callers():
    coverage = Coverage(tests={"t.py::a": 0.5, "t.py::c": 0.1}, lines={"a.py": {1: {EVERYTHING, "t.py::a"}}})
    assert coverage.tests_for("a.py", range(1, 2)) is None  # every test, by default
    assert coverage.tests_for("a.py", range(1, 2), import_time=False) == ["t.py::a"]


def test_tests_run_fastest_first_and_an_unmeasured_test_before_the_measured():
    coverage = Coverage(tests={"t.py::a": 0.5, "t.py::c": 0.1}, lines={"a.py": {3: {"t.py::a", "t.py::b", "t.py::c"}}})
    assert coverage.tests_for("a.py", range(2, 5)) == ["t.py::b", "t.py::c", "t.py::a"]


def test_coverage_data_is_read_as_lines_by_file_under_the_root_and_test_by_context(tmp_path):
    root = tmp_path / "tree"
    (root / "pkg").mkdir(parents=True)
    source = root / "pkg" / "m.py"
    source.write_text("x = 1\ny = 2\n")
    data = CoverageData(basename=str(tmp_path / ".coverage"))
    data.set_context("tests/t.py::a[x|y]|run")  # pytest-cov's context: the test id, then the phase
    data.add_lines({str(source): [1, 2]})
    data.set_context("")  # import time
    data.add_lines({str(source): [1]})
    data.set_context("tests/u.py::b|setup")  # a fixture: perhaps shared by every test of tests/u.py
    data.add_lines({str(source): [2]})
    data.write()
    table = _read(tmp_path / ".coverage", root, _test_context)
    assert table == {"pkg/m.py": {1: {"tests/t.py::a[x|y]", EVERYTHING}, 2: {"tests/t.py::a[x|y]", "tests/u.py::*"}}}


def test_a_line_a_fixture_ran_reaches_every_test_of_its_file():
    # tests/u.py::b set up a module-scoped fixture that ran line 2; u.py::c used it after, unseen
    tests = {"tests/u.py::b": 0.2, "tests/u.py::c": 0.1, "tests/t.py::a": 0.3, "tests/uv.py::d": 0.1}
    coverage = Coverage(tests=tests, lines={"pkg/m.py": {2: {"tests/t.py::a", "tests/u.py::*"}}})
    assert coverage.tests_for("pkg/m.py", range(2, 3)) == ["tests/u.py::c", "tests/u.py::b", "tests/t.py::a"]
    assert _test_context("tests/u.py::C::b[1]|setup") == "tests/u.py::*"
    assert _test_context("tests/u.py::b|teardown") == "tests/u.py::b"
    assert _test_context("plain") == "plain"  # a context without a phase is its own name


def test_an_import_names_its_module_each_parent_and_what_it_takes(tmp_path):
    path = Path(tmp_path / "m.py")
    path.write_text("import a.b\nfrom c.d import e\nfrom . import f\nfrom .g import h\n")
    assert _imports(path) == {"a", "a.b", "c", "c.d", "c.d.e"}  # relative imports are the package's own


def test_a_modules_mirror_test_is_named_after_its_path():
    assert mirror("sashimi/model/kernel.py") == "tests/model/test_kernel.py"
    assert mirror("sashimi/bench.py") == "tests/test_bench.py"
    assert mirror("reference/layer.py") == "tests/reference/test_layer.py"
