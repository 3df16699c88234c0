"""The fused step as one native call per sample (sashimi/model/native_step.cpp).

`FusedStep` runs one Python function per depth; even compiled, each sample crosses from Python to
C++ a few times and every small op pays its dispatch. `NativeStep` hands the same packed weights,
states and buffers to a C++ object whose `step` runs every depth due at this sample in plain loops.
The extension is built with torch.utils.cpp_extension (ninja and a C++ compiler) at first use and
kept in torch's extension cache, so later processes load it in well under a second; without a
compiler, `available()` says so and callers keep the Python fused step or the modules' step.
Its oracles are `FusedStep` and `SashimiLM.step` (tests/model/test_native.py).
"""

import functools
import hashlib
import math
import os
import platform
import shutil
from pathlib import Path

import torch

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model.fused import FusedStep
from sashimi.model.lm import SashimiLM, check_tokens

SOURCE = Path(__file__).with_name("native_step.cpp")
# -march=native: the build is for this CPU (its name below carries a hash of the CPU's flags, so a
# cache shared between machines never loads another CPU's build); omp simd lets the compiler
# vectorize the dot products' reductions without licensing any other reordering.
# -fopenmp: at::parallel_for splits the batch over torch's OpenMP threads (the process already
# holds torch's libgomp, which the extension's reference to libgomp.so.1 resolves to).
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno"]

# the program's header and per-block record (native_step.cpp: the enums at its top)
NORM_KIND = {None: 0, "layer": 1, "scalar": 2}
BLOCK = 20


def compiler_present() -> bool:
    return shutil.which("ninja") is not None and any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def cpu_tag() -> str:
    """A short hash of what -march=native builds for: the machine, and the CPU's flags."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    key = platform.machine() + flags + SOURCE.read_text() + " ".join(FLAGS) + torch.__version__
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@functools.cache
def extension():
    """The built extension, or None when it cannot be built here (no compiler or ninja, a failed
    build: the reason is kept in `FAILURE`)."""
    if os.environ.get("SASHIMI_NATIVE", "1") == "0":
        FAILURE[0] = "SASHIMI_NATIVE=0"
        return None
    if not compiler_present():
        FAILURE[0] = "no C++ compiler and ninja on PATH"
        return None
    from torch.utils import cpp_extension

    try:
        return cpp_extension.load(
            name=f"sashimi_native_{cpu_tag()}",
            sources=[str(SOURCE)],
            extra_cflags=FLAGS,
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as e:  # a broken toolchain: the callers fall back, saying why
        FAILURE[0] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return None


FAILURE = [""]  # why the extension is not available, once `extension()` has tried


def available() -> bool:
    return extension() is not None


def slot_offset(slot: tuple | None) -> int:
    return -1 if slot is None else slot[0]


def norm_fields(spec: tuple | None, eps: list[float]) -> list[int]:
    """(kind, slot 1, slot 2, eps index) for `norm_spec`'s tuple."""
    if spec is None:
        return [0, -1, -1, 0]
    if spec[0] == "layer":
        eps.append(float(spec[3]))
        return [NORM_KIND["layer"], spec[1][0], spec[2][0], len(eps) - 1]
    return [NORM_KIND["scalar"], spec[1][0], spec[2][0], 0]


class Packed:
    """The depth's flat weights with a packed copy of each linear weight appended, as
    native_step.cpp's `linear` reads it: the outputs in tiles of 128 bytes (32 floats, 16
    doubles), each tile's (in, tile) block of the transposed weight contiguous, zero past `out`."""

    def __init__(self, flat: Float[Tensor, " W"]):
        self.flat, self.parts, self.size = flat, [flat], flat.numel()
        self.tile = 128 // flat.element_size()

    def slot(self, slot: tuple | None) -> int:
        if slot is None:
            return -1
        offset, (out, inp) = slot
        weight = self.flat[offset : offset + out * inp].view(out, inp)
        padded = -(-out // self.tile) * self.tile
        weight = torch.cat([weight, weight.new_zeros(padded - out, inp)])
        self.parts.append(weight.view(padded // self.tile, self.tile, inp).transpose(1, 2).reshape(-1))
        self.size += padded * inp
        return self.size - padded * inp

    def transposed(self, slot: tuple) -> int:
        """A copy of an (H, N2) recurrence coefficient as (N2, H): native_step.cpp's recurrence
        runs along h."""
        offset, shape = slot
        self.parts.append(self.flat[offset : offset + math.prod(shape)].view(shape).t().reshape(-1))
        self.size += math.prod(shape)
        return self.size - math.prod(shape)

    def tensor(self) -> Float[Tensor, " W2"]:
        return torch.cat(self.parts)


def program(spec: dict, width: int, flat: Float[Tensor, " W"]) -> tuple[list[int], list[float], Tensor]:
    """One depth's `FusedStep` spec as native_step.cpp's int64 fields, its eps values and the flat
    weights those fields index."""
    eps, pack = [0.0], Packed(flat)
    down, up, decoder = spec["down"], spec["up"], spec["decoder"]
    header = [
        width,
        slot_offset(spec["embedding"]),
        pack.slot(down and down[0]),
        slot_offset(down and down[1]),
        down[0][1][1] if down else 0,
        pack.slot(up and up[0]),
        slot_offset(up and up[1]),
        up[0][1][0] if up else 0,
        pack.slot(decoder and decoder[0]),
        slot_offset(decoder and decoder[1]),
        decoder[0][1][0] if decoder else 0,
        *norm_fields(spec["final_norm"], eps),
        len(spec["blocks"]),
    ]
    fields = header
    for kind, norm, *slots in spec["blocks"]:
        record = [0 if kind == "s4" else 1, *norm_fields(norm, eps)]
        if kind == "s4":
            *weights, glu = slots
            *coefficients, D, weight, bias = weights
            record += [pack.transposed(s) for s in coefficients] + [D[0], pack.slot(weight), bias[0], weight[1][0], int(bool(glu))]
        else:
            w1, b1, w2, b2 = slots
            record += [pack.slot(w1), b1[0], pack.slot(w2), b2[0], w1[1][0]]
        fields += record + [0] * (BLOCK - len(record))
    return fields, eps, pack.tensor()


class NativeStep:
    """`FusedStep`'s state and step, the step one native call: `step(tokens)` returns the logits for
    the next sample, as `model.step` does with its own state (after `model.setup_step()`; the
    weights are read when the object is built). Threads split the batch's rows (`threads`, default
    torch's thread count; B = 1 runs on one)."""

    def __init__(self, model: SashimiLM, batch: int, threads: int | None = None):
        native = extension()
        if native is None:
            raise RuntimeError(f"the native step is not available here ({FAILURE[0]})")
        fused = FusedStep(model, batch)
        self.fused, self.batch, self.n_classes = fused, batch, fused.n_classes
        programs = [program(*args) for args in zip(fused.specs, fused.widths, fused.weights)]
        self.stepper = native.Stepper(
            [p for p, _, _ in programs],
            [e for _, e, _ in programs],
            [w for _, _, w in programs],
            [s.new_zeros(s.shape[:3] + (s.shape[4], s.shape[3])) for s in fused.states],  # (B, S, 2, N2, H)
            fused.buffers,
            fused.pending,
            list(fused.pool),
            model.config.d_state,
            threads if threads is not None else torch.get_num_threads(),
        )

    def step(self, tokens: Int[Tensor, " B"], check: bool = True) -> Float[Tensor, "B C"]:
        if tokens.shape != (self.batch,):
            raise ValueError(
                f"NativeStep.step takes one token per sequence, shape ({self.batch},); got {tuple(tokens.shape)}"
            )
        if check:
            check_tokens(tokens, self.n_classes)
        return self.stepper.step(tokens)
