"""Compare two folders of fixtures made by the tools/make_*.py scripts, file by file: every array
bit for bit (same keys, dtypes and shapes), every JSON file byte for byte. Run it after changing a
script, on the fixtures made before and after the change on the same machine (float32 outputs move
in their last bits from one CPU to another, so compare against the committed files only there).

    python tools/compare_fixtures.py /tmp/before /tmp/after

Prints one line per file and exits 1 if any differs or is missing from the second folder.
"""

import argparse
import sys
from pathlib import Path

import numpy as np


def npz_differences(a: Path, b: Path) -> list[str]:
    x, y = np.load(a), np.load(b)
    if sorted(x.files) != sorted(y.files):
        return [f"keys only in one: {sorted(set(x.files) ^ set(y.files))[:5]}"]
    return [
        k
        for k in x.files
        if x[k].dtype != y[k].dtype or x[k].shape != y[k].shape or not np.array_equal(x[k], y[k], equal_nan=True)
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    files = sorted(p for p in args.first.iterdir() if p.suffix in (".npz", ".json"))
    if not files:
        raise SystemExit(f"{args.first}: no .npz or .json files to compare")
    bad = 0
    for path in files:
        other = args.second / path.name
        if not other.is_file():
            print(f"{path.name}: missing from {args.second}")
            bad += 1
            continue
        if path.suffix == ".npz":
            differ = npz_differences(path, other)
            verdict = f"differ: {differ[:5]}" if differ else "equal"
            print(f"{path.name}: {len(np.load(path).files)} arrays, {verdict}")
        else:
            differ = path.read_bytes() != other.read_bytes()
            print(f"{path.name}: " + ("differs" if differ else "equal"))
        bad += bool(differ)
    print(f"{len(files) - bad} of {len(files)} files equal")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
