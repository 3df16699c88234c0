"""Reading a state dict from a file without running any code stored in it.

A `.pt` holding a plain state dict loads with torch's weights-only unpickler. A Lightning `.ckpt`
also pickles its hyperparameters (omegaconf objects, callbacks' state), which the weights-only
unpickler refuses; we read it with an unpickler that builds only torch's allowlisted globals
(tensors, storages, dtypes, plain containers) and replaces every other class or function by an
inert `Opaque` record, so no pickled callable ever runs. The state dict itself must consist of
tensors; one that does not is refused.
"""

import functools
import pickle
import types
from pathlib import Path

import numpy as np
import torch

CONVERT_HINT = (
    "convert it where it was made: python -c \"import torch; c = torch.load('IN', weights_only=False); "
    "torch.save(c.get('state_dict', c), 'OUT.pt')\""
)


class StateFileError(ValueError):
    pass


class Opaque:
    """A pickled object of a class we do not build (a subclass per pickled class name): it keeps its
    arguments, state and items, and runs nothing: neither the class's code nor its __setstate__."""

    name = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        self.state = state

    def __setitem__(self, key, value) -> None:
        self.items.append((key, value))

    def append(self, value) -> None:
        self.items.append(value)

    def extend(self, values) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"Opaque({self.name})"


@functools.cache
def opaque_class(full_name: str) -> type:
    """The inert stand-in of the pickled class (or function) `full_name`. A class, so that pickle's
    NEWOBJ (`cls.__new__(cls, ...)`, what most classes pickle as) builds it as it does a call."""
    return type("Opaque", (Opaque,), {"name": full_name})


def _allowed_globals() -> dict:
    from torch import _weights_only_unpickler

    return _weights_only_unpickler._get_allowed_globals()


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        allowed = _allowed_globals().get(f"{module}.{name}")
        if allowed is not None:
            return allowed
        return opaque_class(f"{module}.{name}")


_INERT = types.SimpleNamespace(
    Unpickler=_InertUnpickler, load=lambda f, **kw: _InertUnpickler(f, **kw).load(), __name__="inert_pickle"
)


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e) and "weights_only" not in str(e):
            raise StateFileError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # truncated or foreign files raise several types
        raise StateFileError(
            f"cannot read {path}: not a torch state dict, Lightning checkpoint or .npz, or cut short "
            f"({type(e).__name__})"
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_INERT)
    except Exception as e:
        raise StateFileError(
            f"cannot read {path} without running code stored in it ({type(e).__name__}); {CONVERT_HINT}"
        ) from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a .npz, a .pt state dict, or a Lightning .ckpt (its `state_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise StateFileError(f"file not found: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return {k: torch.from_numpy(np.asarray(arrays[k])) for k in arrays.files}
        except Exception as e:
            raise StateFileError(
                f"cannot read {path} as a .npz of arrays: {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}"
            ) from None
    state = _torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise StateFileError(f"{path} does not hold a state dict (found {type(state).__name__}); {CONVERT_HINT}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise StateFileError(
            f"{path}: entries {', '.join(map(str, bad[:3]))} are not tensors: not a plain state dict; {CONVERT_HINT}"
        )
    return dict(state)
