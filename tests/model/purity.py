"""Step-mode purity, shared by the step tests of tests/model: a step leaves the caller's state and
the module's weights untouched, and a rollout equals one made with states copied at every step."""

import copy

import torch


def assert_same_state(actual, expected) -> None:
    """Nested step states (dicts, lists, tuples, tensors, None) equal exactly: same structure, dtypes, values."""
    assert type(actual) is type(expected), (type(actual), type(expected))
    if isinstance(actual, torch.Tensor):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape and torch.equal(actual, expected)
    elif isinstance(actual, dict):
        assert actual.keys() == expected.keys()
        for key in actual:
            assert_same_state(actual[key], expected[key])
    elif isinstance(actual, (list, tuple)):
        assert len(actual) == len(expected), (len(actual), len(expected))
        for a, e in zip(actual, expected):
            assert_same_state(a, e)
    else:
        assert actual == expected


def assert_step_is_pure(module, x, state):
    """`module.step(x, state)` leaves `state` as it was (compared with a deep copy taken before) and a
    second step from the same state gives the same output and new state; returns (output, new state)."""
    before = copy.deepcopy(state)
    with torch.no_grad():
        y, new_state = module.step(x, state)
        assert_same_state(state, before)
        y_again, new_state_again = module.step(x, state)
    assert_same_state(y_again, y)
    assert_same_state(new_state_again, new_state)
    assert_same_state(state, before)
    return y, new_state


def assert_rollout_is_pure(module, inputs) -> None:
    """`assert_step_is_pure` at every position of `inputs` (position axis 1) from a fresh state, and
    no parameter or buffer of `module` moves."""
    module.setup_step()
    weights = copy.deepcopy(module.state_dict())
    state = module.default_state(inputs.shape[0])
    for t in range(inputs.shape[1]):
        _, state = assert_step_is_pure(module, inputs[:, t], state)
    assert_same_state(module.state_dict(), weights)
