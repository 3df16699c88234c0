"""The fused step as one native call per sample (sashimi/model/native_step.cpp).

`FusedStep` runs one Python function per depth; even compiled, each sample crosses from Python to
C++ a few times and every small op pays its dispatch. `NativeStep` hands the same weights (packed
for the native loops), states and buffers to a C++ object whose `step` runs every depth due at
this sample in plain loops, the batch's rows split over OpenMP threads.

The library includes no torch header: the C++ compiler on PATH builds it in about a second at
first use, into a cache keyed by the source, the flags and the CPU (SASHIMI_CACHE, else
~/.cache/sashimi), and ctypes loads it. Without a compiler (or with SASHIMI_NATIVE=0),
`available()` is False and `reason()` says why; callers keep the Python fused step or the
modules' step. Its oracles are `FusedStep` and `SashimiLM.step` (tests/model/test_native.py).
"""

import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model.fused import FusedStep, check_step_tokens
from sashimi.model.fused_layout import DepthSpec, NormSpec, S4BlockSpec
from sashimi.model.lm import SashimiLM

# the step, and the S4 kernel's Cauchy sums (sashimi/model/native_kernel.py): one library
SOURCES = [Path(__file__).with_name(name) for name in ("native_step.cpp", "native_cauchy.cpp")]
# -march=native: the build is for this CPU (the cache key carries the CPU's flags, so a cache shared
# between machines never loads another CPU's build). -fopenmp: the threads over the batch's rows;
# the process already holds torch's libgomp, which the library's libgomp.so.1 resolves to.
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC"]
BLOCK = 20  # fields per residual block in a program (native_step.cpp)
# With fewer rows than threads, depths at least this wide run as one team of all the threads; narrower
# ones on one thread. Widths 64, 128, 256 alone / as a team at B = 1 (`python tools/roofline.py`): Zen 1
# 65/88, 191/155, 1350/733 us; Zen 4 32/47, 74/96, 298/203 (docs/PERFORMANCE.md).
TEAM_WIDTH = 128  # mutate: skip a speed rule: a team computes what one thread does (test_native_team.py)
NORM_KIND = {"layer": 1, "scalar": 2}
WHY_NOT: list[str] = []  # why the library is not available, once `library()` has tried


def compiler() -> str | None:
    return next((c for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c and shutil.which(c)), None)


def cpu_flags() -> str:
    try:
        return next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("flags", "Features"))),
            "",
        )
    except OSError:
        return ""


def cache_dir() -> Path:
    return Path(os.environ.get("SASHIMI_CACHE") or Path.home() / ".cache" / "sashimi")


def build(cxx: str) -> Path:
    """The library for this source, flags and CPU: from the cache, else compiled into it (to a
    temporary name, then renamed: concurrent processes never load a half-written file)."""
    key = "\n".join([*(source.read_text() for source in SOURCES), cxx, *FLAGS, platform.machine(), cpu_flags()])
    target = cache_dir() / f"sashimi_native_{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        done = subprocess.run([cxx, *FLAGS, *map(str, SOURCES), "-o", str(partial)], capture_output=True, text=True)
        if done.returncode:
            lines = done.stderr.strip().splitlines()
            first_error = next((line for line in lines if "error" in line), lines[-1] if lines else "")
            raise RuntimeError(f"{cxx} failed: {first_error.strip()}")  # the cause, not the caret under it
        os.replace(partial, target)
    return target


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded library, or None when it cannot be built here (WHY_NOT says why)."""
    if os.environ.get("SASHIMI_NATIVE", "1") == "0":
        WHY_NOT.append("SASHIMI_NATIVE=0")
        return None
    cxx = compiler()
    if cxx is None:
        WHY_NOT.append("no C++ compiler on PATH (c++, g++, clang++ or $CXX)")
        return None
    try:
        lib = ctypes.CDLL(str(build(cxx)))
    except (OSError, RuntimeError) as e:
        WHY_NOT.append(f"building native_step.cpp failed: {e}")
        return None
    p, i64, d = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    lib.sashimi_stepper_new.restype = p
    lib.sashimi_stepper_new.argtypes = [ctypes.c_int, i64, p, p, p, p, p, p, p, p, p, i64, i64, i64]
    lib.sashimi_stepper_step.argtypes = [p, ctypes.c_int, p, p, ctypes.c_int]
    lib.sashimi_stepper_free.argtypes = [p, ctypes.c_int]
    lib.sashimi_activation.argtypes = [ctypes.c_int, ctypes.c_int, p, i64]
    lib.sashimi_stepper_sample.argtypes = [p, ctypes.c_int, i64, p, p, p, d, d, ctypes.c_int]
    lib.sashimi_draw.argtypes = [ctypes.c_int, p, i64, i64, d, d, p, p, p]
    lib.sashimi_exp_draw.argtypes = [p, p, i64]
    lib.sashimi_cauchy.argtypes = [ctypes.c_int, p, p, p, p, p, p, i64, i64, i64, ctypes.c_int, ctypes.c_int]
    return lib


def available() -> bool:
    return library() is not None


def reason() -> str:
    """Why the native step is not available ('' when it is)."""
    return "" if available() else WHY_NOT[-1]


def loaded() -> ctypes.CDLL:
    """The library, for a caller that cannot go on without it: else RuntimeError saying why."""
    if (lib := library()) is None:
        raise RuntimeError(f"the native step is not available here: {reason()}")
    return lib


class Packed:
    """A depth's flat weights with the copies the native loops read appended: each linear weight
    packed in tiles of 128 bytes of outputs (32 floats, 16 doubles), each tile's (in, tile) block of
    the transposed weight contiguous and zero past `out`; an S4 block's recurrence coefficients
    interleaved by vectors of channels (`recurrence`)."""

    def __init__(self, flat: Float[Tensor, " W"]):
        self.flat, self.parts, self.size = flat, [flat], flat.numel()
        self.tile = 128 // flat.element_size()
        self.lanes = 32 // flat.element_size()

    def append(self, t: Tensor) -> int:
        self.parts.append(t)  # copied once, by `tensor`, from the view as it is
        self.size += t.numel()
        return self.size - t.numel()

    def linear(self, slot: tuple | None) -> int:
        if slot is None:
            return -1  # mutate: skip any negative offset means "absent" to the C++ (`p[...] >= 0`)
        offset, (out, inp) = slot
        weight = self.flat[offset : offset + out * inp].view(out, inp)
        padded = -(-out // self.tile) * self.tile
        if padded > out:  # mutate: skip >=: padding by no rows changes nothing
            weight = torch.cat([weight, weight.new_zeros(padded - out, inp)])
        return self.append(weight.view(padded // self.tile, self.tile, inp).transpose(1, 2))

    def recurrence(self, slots: tuple) -> int:
        """An S4 block's ten (H, N2) coefficients as (vectors, N2, 10, lanes): channels in vectors of
        32 bytes, zero past H, so that the native recurrence reads a vector's coefficients in one run."""
        parts = torch.stack([self.flat[o : o + math.prod(shape)].view(shape) for o, shape in slots])  # (10, H, N2)
        H, N2 = parts.shape[1:]
        vectors = -(-H // self.lanes)
        parts = torch.cat([parts, parts.new_zeros(10, vectors * self.lanes - H, N2)], 1)
        return self.append(parts.view(10, vectors, self.lanes, N2).permute(1, 3, 0, 2))

    def tensor(self) -> Float[Tensor, " W2"]:
        """Every part in one tensor, each copied once from its (strided) view into its place."""
        out = self.flat.new_empty(self.size)
        for place, part in zip(out.split([p.numel() for p in self.parts]), self.parts):
            place.view(part.shape).copy_(part)
        return out


def offset(slot: tuple | None) -> int:
    return -1 if slot is None else slot[0]


def norm_fields(norm: NormSpec | None, eps: list[float]) -> list[int]:
    """(kind, slot 1, slot 2, eps index) of a norm; kind 0: no norm."""
    if norm is None:
        return [0, -1, -1, 0]  # mutate: skip only a depth > 0's final norm is None; the C++ reads it under DEC_W >= 0
    if norm.kind == "layer":
        eps.append(float(norm.eps))
    return [NORM_KIND[norm.kind], norm.first[0], norm.second[0], len(eps) - 1]


def program(spec: DepthSpec, width: int, flat: Float[Tensor, " W"]) -> tuple[list[int], list[float], Tensor]:
    """One depth's `FusedStep` spec as native_step.cpp's int64 fields (its header enum, then BLOCK
    fields per block), its eps values and the flat weights the fields index."""
    eps, pack = [0.0], Packed(flat)  # mutate: skip eps[0] is the placeholder of scalar norms; only layer norms read eps
    down, up, decoder = spec.down, spec.up, spec.decoder
    fields = [
        width,
        offset(spec.embedding),
        pack.linear(down and down[0]),
        offset(down and down[1]),
        down[0][1][1] if down else 0,
        pack.linear(up and up[0]),
        offset(up and up[1]),
        up[0][1][0] if up else 0,  # mutate: skip the bias has the weight's out; 0 at depth 0, where UP_* is unread
        pack.linear(decoder and decoder[0]),
        offset(decoder and decoder[1]),
        decoder[0][1][0] if decoder else 0,  # mutate: skip the bias has the weight's out; unread below depth 0
        *norm_fields(spec.final_norm, eps),
        len(spec.blocks),
    ]
    for block in spec.blocks:
        record = [0 if isinstance(block, S4BlockSpec) else 1, *norm_fields(block.norm, eps)]
        if isinstance(block, S4BlockSpec):
            record += [pack.recurrence(block.coefficients), *[0] * 9]  # fields P0 + 1 ... P0 + 9: unused
            record += [block.D[0], pack.linear(block.weight), block.bias[0], block.weight[1][0], int(block.glu)]
        else:
            record += [pack.linear(block.w1), block.b1[0], pack.linear(block.w2), block.b2[0], block.w1[1][0]]
        fields += record + [0] * (BLOCK - len(record))
    return fields, eps, pack.tensor()


def pointers(tensors: list[Tensor]) -> ctypes.Array:
    return (ctypes.c_void_p * max(len(tensors), 1))(*(t.data_ptr() for t in tensors))


class NativeStep:
    """`FusedStep`'s step as one native call: `step(tokens)` returns the logits for the next
    sample, as `model.step` does with its own state (after `model.setup_step()`; the weights are
    read when the object is built). `threads` (default torch's thread count) split the batch's
    rows (or, with fewer rows than threads, share each depth at least `team_width` wide); float32 or
    float64, as the model. CPU only."""

    def __init__(self, model: SashimiLM, batch: int, threads: int | None = None, team_width: int = TEAM_WIDTH):
        lib = loaded()
        weight = model.encoder.embedding.weight
        if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.float64):
            raise ValueError(
                f"the native step runs float32 or float64 models on the CPU; got {weight.dtype} on {weight.device}"
            )
        fused = FusedStep(model, batch)
        self.batch, self.n_classes, self.dtype = batch, fused.n_classes, weight.dtype
        self.threads = threads if threads is not None else torch.get_num_threads()
        if self.threads < 1:
            raise ValueError(f"the native step needs at least 1 thread; got {self.threads}")
        programs = [program(*args) for args in zip(fused.specs, fused.widths, fused.weights)]
        # everything the C++ object points into, kept alive by this one
        self.fields = [torch.tensor(p, dtype=torch.int64) for p, _, _ in programs]  # mutate: skip ints are int64
        self.eps = [torch.tensor(e, dtype=torch.float64) for _, e, _ in programs]
        self.weights = [w.contiguous() for _, _, w in programs]
        lanes = 32 // weight.element_size()  # (B, S, vectors of channels, N2, 2, lanes): native_step.cpp's recurrence
        self.states = [s.new_zeros(s.shape[:2] + (-(-s.shape[3] // lanes), s.shape[4], 2, lanes)) for s in fused.states]
        self.buffers, self.pending = fused.buffers, fused.pending
        self.pool = torch.tensor(list(fused.pool) or [0], dtype=torch.int64)  # mutate: skip no pool: never read
        self.double = int(self.dtype == torch.float64)
        sizes = [
            torch.tensor([t.numel() for t in ts], dtype=torch.int64) for ts in (self.fields, self.eps)
        ]  # mutate: skip Python ints are int64 already
        self.handle = lib.sashimi_stepper_new(
            self.double,
            len(programs),
            pointers(self.fields),
            sizes[0].data_ptr(),
            pointers(self.eps),
            sizes[1].data_ptr(),
            pointers(self.weights),
            pointers(self.states),
            pointers(self.buffers),
            pointers(self.pending),
            self.pool.data_ptr(),
            model.config.d_state,
            batch,
            team_width,
        )
        self.free = functools.partial(lib.sashimi_stepper_free, self.handle, self.double)
        self.call = functools.partial(lib.sashimi_stepper_step, self.handle, self.double)
        self.call_sample = functools.partial(lib.sashimi_stepper_sample, self.handle, self.double)

    def __del__(self):
        if getattr(self, "free", None) is not None:
            self.free()

    def step(self, tokens: Int[Tensor, " B"], check: bool = True) -> Float[Tensor, "B C"]:
        """Logits for the next sample. `check` False skips the token range check, for callers whose
        tokens come from sampling these logits (always in range)."""
        check_step_tokens("NativeStep", tokens, self.batch, self.n_classes, check)
        tokens = tokens.to(torch.int64).contiguous()
        logits = torch.empty(self.batch, self.n_classes, dtype=self.dtype)
        self.call(tokens.data_ptr(), logits.data_ptr(), self.threads)
        return logits

    def sample(
        self, tokens: Int[Tensor, " B"], uniforms: Float[Tensor, "S B"], temperature: float, top_p: float
    ) -> tuple[Int[Tensor, "S B"], Float[Tensor, "S B"]]:
        """S samples in one native call: each step's logits drawn from as `sashimi.sampling.sample`'s
        loop draws (`draw`, with that step's uniforms) and the token fed back as the next input.
        tokens: the first input (not checked: the caller's are in range). Returns the tokens drawn
        and their log-probabilities under the tempered, filtered distribution."""
        steps = uniforms.shape[0]
        out = torch.empty(steps + 1, self.batch, dtype=torch.int64)
        out[0] = tokens
        uniforms = uniforms.to(torch.float32).contiguous()
        picked = torch.empty(steps, self.batch, dtype=torch.float32)
        self.call_sample(
            steps, out.data_ptr(), uniforms.data_ptr(), picked.data_ptr(), temperature, top_p, self.threads
        )
        return out[1:], picked
