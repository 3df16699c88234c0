"""Inert stand-ins for the data-loading and logging modules the official pipeline imports at module
level but never uses to build or run a model (torchaudio, wandb, pandas, ...): installed in
`sys.meta_path` of this process only, for whichever of them is missing."""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

STUB_ROOTS = [
    "wandb",
    "torchaudio",
    "torchvision",
    "torchtext",
    "datasets",
    "pandas",
    "PIL",
    "cv2",
    "matplotlib",
    "seaborn",
    "sklearn",
    "sktime",
    "timm",
    "torchdiffeq",
    "torchdyn",
    "fast_transformers",
    "data_loader",
]
# NOT stubbed: pykeops / cupy / extensions.* are imported inside try/except by the
# official code to pick a Cauchy/Vandermonde backend; leaving them absent selects the
# naive (pure torch) path.


class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (cls,), {})


class _StubBase(metaclass=_StubMeta):
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return self

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubBase()


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        obj = _StubMeta(name, (_StubBase,), {"__module__": self.__name__})
        setattr(self, name, obj)
        return obj


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


def install_stubs():
    import pytorch_lightning  # noqa: F401  (import the real thing before any stub exists)
    import torchmetrics  # noqa: F401

    missing = [r for r in STUB_ROOTS if importlib.util.find_spec(r) is None]
    sys.meta_path.insert(0, _StubFinder(missing))
    return missing
