"""One catalogue entry: a bug anchored to code (`sashimi.harness.anchor`)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    """Replace the one match of `find` inside `target` of `file` by `replace` (and add `append`
    at the end of that module)."""

    id: str
    file: str  # where `target` is looked up first; any file under sashimi/ or reference/ if it moved
    target: str
    find: str
    replace: str
    what: str
    append: str = ""
    kills: str = ""  # the test file expected to kill it: run first, so that `pytest -x` stops early
