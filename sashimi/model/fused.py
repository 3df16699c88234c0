"""Step mode fused per stage: the generation path (docs/DESIGN.md, "Fused step").

`SashimiLM.step` walks the modules one small op at a time: about 14 eager ops per residual block
and some 300 per sample for the paper model, each costing more in dispatch than in arithmetic.
`FusedStep` computes the same numbers with one plain function per depth of the U-Net (depth 0:
the sample rate; depth d: every prod(pool[:d]) samples; the last depth is the centre), working
on weights and states it holds as plain tensors, and can hand each of those functions to
`torch.compile` (an unchecked inner function: jaxtyping checks stay on the eager wrapper).
The module-by-module `SashimiLM.step` is its oracle (tests/model/test_fused.py).

Per sample t, fine to coarse: depth 0 embeds the token, adds the pending UpPool output and runs
its blocks, the final norm and the decoder; the embedding goes into DownPool 0's buffer. When a
buffer fills, the next depth runs: DownPool linear, pending output (+ blocks), and its UpPool
refills the finer depth's pending outputs, which that depth has just used up (the causal shift).
"""

import math
import shutil
import time
import typing
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model.fused_layout import DepthSpec, Pack, S4BlockSpec, apply_norm, block_spec, norm_spec, take
from sashimi.model.lm import SashimiLM, check_tokens


@typing.no_type_check  # compiled
def s4_recurrence(
    u: Float[Tensor, "B H"], state: Float[Tensor, "B 2 H N2"], *coefficients: Float[Tensor, "H N2"]
) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B 2 H N2"]]:
    """`recurrence.dplr_step` in real arithmetic, so that a compiler fuses it into one pass over the
    state: x' = a x + b u - g (m . x), y = c . x', the state held as its real and imaginary parts
    (B, 2, H, N2), each coefficient as (real, imaginary) parts (m and c as `dplr_step` takes them:
    m . x = Re(m) . Re(x) + Im(m) . Im(x) for the stored vectors)."""
    ar, ai, br, bi, gr, gi, mr, mi, cr, ci = coefficients
    re, im = state[:, 0], state[:, 1]
    mu = (re * mr + im * mi).sum(-1, keepdim=True)
    u = u[..., None]
    xr = ar * re - ai * im + br * u - gr * mu
    xi = ar * im + ai * re + bi * u - gi * mu
    return (xr * cr + xi * ci).sum(-1), torch.stack([xr, xi], 1)


@typing.no_type_check  # compiled
def run_blocks(
    x: Float[Tensor, "B H"], states: Float[Tensor, "B S 2 H N2"], flat: Float[Tensor, " W"], blocks: tuple
) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B S 2 H N2"]]:
    """x through the residual blocks of one stage; one new recurrence state per S4 block."""
    new_states = []
    for block in blocks:
        u = apply_norm(x, flat, block.norm)
        if isinstance(block, S4BlockSpec):
            coefficients = (take(flat, s) for s in block.coefficients)
            y, state = s4_recurrence(u, states[:, len(new_states)], *coefficients)
            new_states.append(state)
            z = F.linear(F.gelu(y + take(flat, block.D) * u), take(flat, block.weight), take(flat, block.bias))
            z = F.glu(z, -1) if block.glu else z
        else:
            hidden = F.gelu(F.linear(u, take(flat, block.w1), take(flat, block.b1)))
            z = F.linear(hidden, take(flat, block.w2), take(flat, block.b2))
        x = x + z
    return x, torch.stack(new_states, 1) if new_states else states


@typing.no_type_check  # compiled
def depth_step(
    source: Int[Tensor, " B"] | Float[Tensor, "B H_fine P"],
    pending: Float[Tensor, "B H"] | None,
    states: Float[Tensor, "B S 2 H N2"],
    flat: Float[Tensor, " W"],
    spec: DepthSpec,
) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B C"] | Float[Tensor, "B H_fine P"], Float[Tensor, "B S 2 H N2"]]:
    """One step of one depth: (its input, its output, new states). Depth 0's source is the tokens
    and its output the logits; a deeper one's source is the finer depth's full DownPool buffer
    (B, H, P) and its output the finer depth's next P pending inputs (B, H_fine, P)."""
    if spec.embedding is not None:
        x = F.embedding(source, take(flat, spec.embedding))
    else:
        x = F.linear(source.flatten(1), *(take(flat, s) for s in spec.down))
    z = x if pending is None else x + pending  # the centre has no UpPool: its skip is its own input
    out, states = run_blocks(z, states, flat, spec.blocks)
    out = out + z
    if spec.decoder is not None:
        logits = F.linear(apply_norm(out, flat, spec.final_norm), *(take(flat, s) for s in spec.decoder))
        return x, logits, states
    return x, F.linear(out, *(take(flat, s) for s in spec.up)).view(out.shape[0], -1, spec.up_pool), states


def check_step_tokens(owner: str, tokens: Tensor, batch: int, n_classes: int, check: bool) -> None:
    """One token per sequence; with `check`, each in [0, n_classes) (sampled tokens need no check)."""
    if tokens.shape != (batch,):
        raise ValueError(f"{owner}.step takes one token per sequence, shape ({batch},); got {tuple(tokens.shape)}")
    if check:
        check_tokens(tokens, n_classes)


def compiler_available() -> bool:
    """torch.compile's CPU backend builds C++: it needs a compiler on PATH."""
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


class Depth(torch.nn.Module):
    """`depth_step` of one depth with its layout fixed, traced by torch.fx into straight-line code
    (no layout dictionary left to walk or to guard): what `torch.compile` is given."""

    def __init__(self, spec: DepthSpec):
        super().__init__()
        self.spec = spec

    @typing.no_type_check  # traced by torch.fx: its arguments are proxies
    def forward(
        self, source: Tensor, pending: Tensor | None, states: Tensor, flat: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        return depth_step(source, pending, states, flat, self.spec)


def traced_depth(spec: DepthSpec, centre: bool) -> torch.fx.GraphModule:
    return torch.fx.symbolic_trace(Depth(spec), concrete_args={"pending": None} if centre else None)


COMPILED: dict[tuple, Callable] = {}


def compiled_depth(spec: DepthSpec, centre: bool, device: str) -> Callable:
    """torch.compile of one depth's traced function, kept per layout for the whole process: every
    FusedStep of the same layout (each batch `generate` samples, each benchmark repeat) reuses it
    rather than tracing and compiling again. The weights are arguments, so the layout is the key."""
    key = (repr(spec), centre, device)
    if key not in COMPILED:
        # CUDA graphs on a GPU; on a CPU the C++ wrapper, which calls the kernels without Python in between
        how = {"mode": "reduce-overhead"} if device == "cuda" else {"options": {"cpp_wrapper": True}}
        COMPILED[key] = torch.compile(traced_depth(spec, centre), fullgraph=True, dynamic=False, **how)
    return COMPILED[key]


class FusedStep:
    """Generation state and step for `batch` sequences of one model (after `model.setup_step()`).

    `step(tokens)` returns the logits for the next sample, as `model.step` does with its own
    state; the weights are read when the object is built (build a new one after they change).
    compile: hand each depth's function to torch.compile (CUDA graphs on a GPU, mode
    "reduce-overhead"); compiling costs seconds per depth once per process (and less with
    inductor's on-disk cache), so it pays off on long generations (docs/PERFORMANCE.md,
    "Generation"). If compiling fails, the eager functions run, with a warning.
    """

    def __init__(self, model: SashimiLM, batch: int, compile: bool = False):
        backbone = model.backbone
        self.pool, self.n_classes = backbone.pool, model.config.n_classes
        K = len(self.pool)
        weight = model.encoder.embedding.weight
        specs, packs = [], []
        for d in range(K + 1):
            pack = Pack()
            layers = backbone.c_layers if d == K else backbone.u_layers[K - 1 - d][1:]
            if d == 0:
                head = model.decoder.output_transform
                ends = dict(
                    embedding=pack.slot(weight),
                    final_norm=norm_spec(backbone.norm, pack),
                    decoder=(pack.slot(head.weight), pack.slot(head.bias)),
                )
            else:
                down, up = backbone.d_layers[d - 1].linear, backbone.u_layers[K - d][0]
                ends = dict(
                    down=(pack.slot(down.weight), pack.slot(down.bias)),
                    up=(pack.slot(up.linear.weight), pack.slot(up.linear.bias)),
                    up_pool=up.pool,
                )
            specs.append(DepthSpec(blocks=tuple(block_spec(b, pack) for b in layers), **ends))
            packs.append(pack.tensor())
        self.specs, self.weights = specs, packs
        widths = [backbone.d_model] + [down.d_output for down in backbone.d_layers]
        new = weight.new_zeros
        self.buffers = [new(batch, widths[d], self.pool[d]) for d in range(K)]
        self.pending = [new(batch, widths[d], self.pool[d]) for d in range(K)]  # zeros: the UpPool shift
        n_state = model.config.d_state
        self.states = [
            new(batch, sum(isinstance(b, S4BlockSpec) for b in spec.blocks), 2, widths[d], n_state // 2)
            for d, spec in enumerate(specs)
        ]
        self.batch, self.t, self.widths = batch, 0, widths
        self.cuda_graphs = compile and weight.is_cuda
        self.functions = [depth_step] * (K + 1)
        if compile:
            self.functions = [compiled_depth(spec, d == K, weight.device.type) for d, spec in enumerate(specs)]

    def run(self, d: int, source: Tensor, pending: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Depth d's function on its current states: (its input, its output, its new states)."""
        function, args = self.functions[d], (source, pending, self.states[d], self.weights[d])
        if function is depth_step:
            return depth_step(*args, self.specs[d])
        try:
            if not self.cuda_graphs:
                return function(*args)
            # CUDA graphs replay into the same output memory: mark the call and copy what outlives it
            torch.compiler.cudagraph_mark_step_begin()
            return tuple(t.clone() for t in function(*args))
        except Exception as e:  # a compiler that fails (missing headers, unsupported op): run eager
            first_line = str(e).splitlines()[0] if str(e) else ""
            warnings.warn(
                f"torch.compile failed ({type(e).__name__}: {first_line}); running the step functions without it",
                stacklevel=3,
            )
            self.functions = [depth_step] * len(self.functions)
            return depth_step(*args, self.specs[d])

    def warm_up(self, time_limit: float = math.inf, log: Callable[[str], None] | None = None) -> None:
        """Run each depth's function once, discarding the results: compiling happens here rather
        than at the first deep step, mid-generation. Once compiling has taken more than `time_limit`
        seconds, the depths not reached yet run without it (a loaded machine can take minutes per
        depth), and `log` (else a warning) says so."""
        K = len(self.pool)
        tokens = torch.zeros(self.batch, dtype=torch.long, device=self.weights[0].device)
        start = time.perf_counter()
        for d in range(K + 1):
            elapsed = time.perf_counter() - start
            if elapsed > time_limit and self.functions[d] is not depth_step:  # mutate: skip clocks never tie
                self.functions[d:] = [depth_step] * (K + 1 - d)
                notice = (
                    f"compiling the step functions took {elapsed:.1f} s, over the limit of {time_limit:g} s: "
                    f"depths {d} to {K} (of 0 to {K}) run uncompiled"
                )
                log(notice) if log is not None else warnings.warn(notice, stacklevel=2)
                return
            self.run(d, tokens if d == 0 else self.buffers[d - 1], self.pending[d][:, :, 0] if d < K else None)

    def step(self, tokens: Int[Tensor, " B"], check: bool = True) -> Float[Tensor, "B C"]:
        """Logits for the next sample. `check` False skips the token range check, for callers whose
        tokens come from sampling these logits (always in range)."""
        check_step_tokens("FusedStep", tokens, self.batch, self.n_classes, check)
        t, K = self.t, len(self.pool)
        self.t += 1
        x, logits, self.states[0] = self.run(0, tokens, self.pending[0][:, :, t % self.pool[0]] if K else None)
        period = 1
        for d in range(1, K + 1):
            n = (t + 1) // period - 1  # index of this sample at depth d - 1
            self.buffers[d - 1][:, :, n % self.pool[d - 1]] = x
            period *= self.pool[d - 1]
            if (t + 1) % period:
                break
            pending = self.pending[d][:, :, ((t + 1) // period - 1) % self.pool[d]] if d < K else None
            x, self.pending[d - 1], self.states[d] = self.run(d, self.buffers[d - 1], pending)
        return logits
