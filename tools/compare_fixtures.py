"""Compare two folders of fixtures made by the tools/make_*.py scripts, file by file: every array
bit for bit (same keys, dtypes and shapes), every JSON file byte for byte. Run it after changing a
script, on the fixtures made before and after the change on the same machine (float32 outputs move
in their last bits from one CPU to another, so compare against the committed files only there).

    python tools/compare_fixtures.py /tmp/before /tmp/after

Prints one line per file (for arrays that differ, the largest relative difference per dtype) and
exits 1 if any file differs or is missing from the second folder.
"""

import argparse
import sys
from pathlib import Path

import numpy as np


def npz_report(a: Path, b: Path) -> tuple[int, str]:
    """(number of arrays that differ, a line): for arrays of the same dtype and shape that differ,
    the largest difference relative to the largest magnitude of the first file's array, per dtype."""
    x, y = np.load(a), np.load(b)
    if sorted(x.files) != sorted(y.files):
        return 1, f"keys only in one: {sorted(set(x.files) ^ set(y.files))[:5]}"
    differ, worst = [], {}
    for k in x.files:
        u, v = x[k], y[k]
        if u.dtype != v.dtype or u.shape != v.shape:
            differ.append(f"{k} ({u.dtype}{list(u.shape)} vs {v.dtype}{list(v.shape)})")
        elif not np.array_equal(u, v, equal_nan=True):
            differ.append(k)
            if u.dtype.kind == "f" and u.size:
                rel = float(np.max(np.abs(u.astype(np.float64) - v)) / max(float(np.max(np.abs(u))), 1e-300))
                if rel > worst.get(str(u.dtype), (0.0, ""))[0]:
                    worst[str(u.dtype)] = (rel, k)
    if not differ:
        return 0, f"{len(x.files)} arrays, equal"
    largest = "; ".join(f"{dtype} at most {rel:.2g} relative ({k})" for dtype, (rel, k) in sorted(worst.items()))
    line = f"{len(x.files)} arrays, {len(differ)} differ: {differ[:3]}"
    return len(differ), line + (f"; {largest}" if largest else "")


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
            differ, line = npz_report(path, other)
            print(f"{path.name}: {line}")
        else:
            differ = path.read_bytes() != other.read_bytes()
            print(f"{path.name}: " + ("differs" if differ else "equal"))
        bad += bool(differ)
    print(f"{len(files) - bad} of {len(files)} files equal")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
