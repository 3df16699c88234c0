"""The documented contract as data: `specs/<name>.json`, and its one loader.

    tolerances  the one tolerance table, a reason per entry
    presets     model and training presets, the optimizer, the loss chunking
    params      exact parameter counts of the published implementation
    shapes      per-stage output shapes, symbolic in B and L
    claims      the original design note's claims, with the verdicts measured
    official_recipes  the official sashimi experiments' training recipes, resolved (tools/)
    recipes     why each of our presets' differences from them is kept

This folder is the package `specs` (installed beside `sashimi` and `reference`), so the
same files are read from a checkout and from an installed copy.
"""

import json
from functools import cache
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


@cache
def load(name: str) -> dict:
    """The JSON document `specs/<name>.json` (cached: the contract does not change while a process runs)."""
    path = FOLDER / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in FOLDER.glob("*.json"))
        raise ValueError(f"no spec {name!r} in {FOLDER}; known: {', '.join(known)}")
    return json.loads(path.read_text())
