"""The configurations: what the command line and the Python API each start from."""

from sashimi import train as train_cmd
from sashimi.core.config import TrainConfig


def test_train_with_no_flags_is_the_python_apis_default_run():
    """`python -m sashimi.train` and `train(TrainConfig())` are the same run: every field's default,
    the switches (--allow-changed-data: off) included, is the command line's."""
    assert train_cmd.parse_args([]) == TrainConfig()
    assert TrainConfig().allow_changed_data is False
