"""SaShiMi: a multi-scale S4 model of raw audio, fast PyTorch implementation, and its verification harness.

Layers (docs/ARCHITECTURE.md):
  sashimi/<command>.py   the commands (`python -m sashimi.<command>`): parse flags, call the library, print
  sashimi/core           the shape glossary and the typed configuration (presets from specs/)
  sashimi/model          the S4 kernel and layer, pooling, blocks, backbone, language model, rollout
  sashimi/audio          quantization, audio datasets, the synthetic corpus
  sashimi/training       the training loop, optimizer, batch sampler, metrics, evaluation
  sashimi/sampling       generation in step mode and writing samples
  sashimi/io             checkpoints, the published state-dict mapping, plots
  sashimi/harness        the gate, golden outputs, contract report, mutation, benchmark, verdicts,
                         and the helpers the tests share
The library never imports a command.

Set SASHIMI_TYPECHECK=1 to check every annotated tensor shape at run time
(jaxtyping + beartype); see `sashimi.core.shapes` for the dimension glossary.
"""

import os

if os.environ.get("SASHIMI_TYPECHECK", "0") not in ("", "0"):
    from jaxtyping import install_import_hook

    _typecheck_hook = install_import_hook(["sashimi", "reference"], "beartype.beartype")

__version__ = "0.1.0"
