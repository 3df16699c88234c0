"""Calibrate the training memory estimate (sashimi/training/memory.py): the peak resident memory of
two training steps (B = 2, one thread) of the tiny and sc09 presets at L = 2048 and 8192, each in a
fresh process, against the bare count that `MEASURED_FACTOR` scales. About 30 s.

    python tools/calibrate_memory.py

Prints one line per case: measured, bare estimate and their ratio (docs/PERFORMANCE.md, "Memory estimate").
"""

import argparse
import subprocess
import sys

from sashimi.core.config import model_config
from sashimi.training.memory import bare_bytes, human

CASES = (("tiny", 2048), ("tiny", 8192), ("sc09", 2048), ("sc09", 8192))

# run in a fresh interpreter: the peak RSS of this process would carry over from case to case
STEPS = """
import resource, torch; torch.set_num_threads(1)
from sashimi.core.config import model_config
from sashimi.model.lm import SashimiLM
from sashimi.training.metrics import LossModel
m = SashimiLM(model_config({preset!r}, 8)); x = torch.randint(0, 256, (2, {seq_len}))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(2):
    loss, n = LossModel(m)(x, x); loss.backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def main(argv=None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    for preset, seq_len in CASES:
        code = STEPS.format(preset=preset, seq_len=seq_len)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        measured = int(out.split()[-1])
        bare = bare_bytes(model_config(preset, 8), 2, seq_len)
        ratio = measured / bare
        print(f"{preset} L={seq_len}: measured {human(measured)}, bare estimate {human(bare)}, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
