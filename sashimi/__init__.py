"""SaShiMi: a multi-scale S4 model of raw audio, fast PyTorch implementation.

Set SASHIMI_TYPECHECK=1 to check every annotated tensor shape at run time
(jaxtyping + beartype); see `sashimi.shapes` for the dimension glossary.
"""

import os

if os.environ.get("SASHIMI_TYPECHECK", "0") not in ("", "0"):
    from jaxtyping import install_import_hook

    _typecheck_hook = install_import_hook(["sashimi", "reference"], "beartype.beartype")

__version__ = "0.1.0"
