"""Access to the contract data in `specs/` (installed as `sashimi.specdata`)."""

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

SOURCE_SPECS = Path(__file__).resolve().parent.parent / "specs"


@cache
def load(name: str) -> dict:
    """The JSON document `specs/<name>.json`: from the source tree beside the package when there
    is one (a checkout, or a copy of it), else from the installed `sashimi.specdata`."""
    local = SOURCE_SPECS / f"{name}.json"
    if local.is_file():
        return json.loads(local.read_text())
    return json.loads(resources.files("sashimi.specdata").joinpath(f"{name}.json").read_text())


@dataclass(frozen=True)
class Comparison:
    name: str
    error: float
    bound: float

    @property
    def holds(self) -> bool:
        return self.error <= self.bound

    def __str__(self) -> str:
        verdict = "ok" if self.holds else "FAIL"
        return f"{self.name}: max abs error {self.error:.3e} vs bound {self.bound:.3e} [{verdict}]"


def as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_complex():
            return x.to(torch.complex128).numpy()
        return x.to(torch.float64).numpy()
    return np.asarray(x)


def compare(actual, expected, tolerance: str) -> Comparison:
    """max|actual - expected| against atol + rtol * max|expected| from the tolerance table."""
    tol = load("tolerances")[tolerance]
    a, e = as_numpy(actual), as_numpy(expected)
    if a.shape != e.shape:
        raise ValueError(f"{tolerance}: shapes differ, actual {a.shape} vs expected {e.shape}")
    error = float(np.max(np.abs(a - e))) if a.size else 0.0
    if not np.isfinite(error):
        error = float("inf")
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    return Comparison(tolerance, error, tol["atol"] + tol["rtol"] * scale)


def assert_close(actual, expected, tolerance: str) -> None:
    result = compare(actual, expected, tolerance)
    if not result.holds:
        raise AssertionError(str(result))
