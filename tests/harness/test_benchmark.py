"""The benchmark's command line."""

import pytest

from sashimi import bench


def test_bench_help_exits_cleanly(capsys):

    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out
