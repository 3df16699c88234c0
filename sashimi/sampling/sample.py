"""Sampling from the model in step mode: tempered, nucleus-filtered draws, one sample at a time.

The recurrence is set up once (never recomputing the convolution per sample); a prefix primes
the state by teacher forcing, exactly as a forward pass over it would.
"""

import contextlib
import functools
import math
import time

import torch

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model import native
from sashimi.model.fused import FusedStep, compiler_available
from sashimi.model.lm import SashimiLM, check_tokens

# `compile="auto"` compiles the step functions from this many steps (prefix + generated) on: a
# cold compile of the paper model costs about 25 s here (5 s from inductor's on-disk cache) and
# saves about 0.7 ms per step at B = 1 (docs/PERFORMANCE.md, "Generation").
COMPILE_MIN_STEPS = 32768
# Step mode runs many small ops per sample: up to this batch, extra threads only add
# synchronisation, which collapses when another process holds a core (the tiny model sampled 13
# samples/s on 2 busy cores, 662 on one thread). Larger batches have GEMMs worth sharing: B = 16
# steps 1.36x faster on 2 threads than on 1 on a quiet machine (docs/PERFORMANCE.md, "Generation").
ONE_THREAD_MAX_BATCH = 8
# Compiling the paper model's step functions takes 8 s on 2 quiet cores and took 320 s beside two
# other busy processes: past this many seconds, the depths not compiled yet run uncompiled.
COMPILE_TIME_LIMIT = 60.0  # mutate: skip a wall-clock tuning constant: no test waits a minute
# The native step draws too (`NativeStep.sample`): this many samples per call, so the ~100 us of
# Python around a call are paid once per chunk; a listener and the progress bar hear of each
# chunk as it ends (128 samples: 8 ms of 16 kHz audio).
NATIVE_CHUNK = 128  # mutate: skip a tuning constant: the tests set their own
# and times its thread counts as it goes (`ThreadChoice`): each is timed on a few samples first, then
# the fastest runs, and every this many calls one is timed again (another process may have taken or
# left a core since).
RETIME_EVERY = 64  # mutate: skip a tuning constant: the tests set their own
# the command line's --compile (generate, bench --against) -> sample()'s `compile`
COMPILE_CHOICES = {"auto": "auto", "on": True, "off": False}


def top_p_filter(logits: Float[Tensor, "B C"], top_p: float) -> Float[Tensor, "B C"]:
    """Keep the smallest set of classes whose probability reaches top_p (nucleus sampling)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop = cumulative - sorted_logits.softmax(-1) >= top_p  # classes entirely beyond the nucleus
    sorted_logits = sorted_logits.masked_fill(drop, -math.inf)
    return torch.full_like(logits, -math.inf).scatter(-1, order, sorted_logits)


@torch.inference_mode()
def sample(
    model: SashimiLM,
    n: int,
    length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    prefix: Int[Tensor, " P"] | None = None,
    seed: int = 0,
    progress=None,
    prepared: bool = False,
    compile: bool | str = "auto",
    log=None,
    compile_time_limit: float = COMPILE_TIME_LIMIT,
    listen=None,
) -> tuple[Int[Tensor, "B T"], Float[Tensor, " B"]]:
    """n sequences: the prefix (if any) then `length` sampled tokens; and the mean log-likelihood
    per generated sample under the (tempered, filtered) sampling distribution. `prepared`: the
    caller ran `model.setup_step()` for the current parameters already (it is not repeated).

    compile: "auto" (the default) runs the native step (`NativeStep`, one C++ call per sample) on a
    CPU where it builds; elsewhere the compiled `FusedStep` from COMPILE_MIN_STEPS steps on when a
    C++ compiler is present (or on a GPU), else the modules' own `SashimiLM.step`. True runs the
    compiled `FusedStep`, False the modules' step (the plain path). All give the same samples up
    to float rounding. `log`: told when compiling starts (it takes seconds) and when it ran past
    `compile_time_limit` seconds, from where on the step functions not compiled yet run without it
    (`FusedStep.warm_up`). `listen`: given each step's drawn tokens (B,) as they are drawn."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1]; got {top_p}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    device = next(model.parameters()).device
    # each module's mode comes back afterwards (a training run samples mid-run); a model already in
    # eval mode is left alone (eval() and train() walk every module: milliseconds a call)
    training = [m for m in model.modules() if m.training]
    if training:
        model.eval()
    try:
        if not prepared:
            model.setup_step()
        prefix = prefix if prefix is not None else torch.zeros(0, dtype=torch.long)
        steps = prefix.shape[0] + length
        engine = step_engine(compile, device, next(model.parameters()).dtype, steps)
        if compile == "auto" and device.type == "cpu" and engine != "native" and log is not None:
            why = native.reason() or "not a float32 or float64 model"
            instead = "compiled fused" if engine == "compiled" else "modules' own"
            log(f"the native step is not available ({why}): running the {instead} step")
        draws = None
        if engine == "native":
            native_step = native.NativeStep(model, n, torch.get_num_threads())
            step = functools.partial(native_step.step, check=False)  # mutate: skip check=True re-checks tokens
            draws = ThreadChoice(native_step)
        elif engine == "compiled":
            if log is not None:
                log("compiling the step functions (once per process; inductor caches them on disk)")
            fused = FusedStep(model, n, compile=True)
            fused.warm_up(compile_time_limit, log)
            # the loop checks the prefix; sampled tokens lie in range
            step = functools.partial(fused.step, check=False)  # mutate: skip check=True re-checks the loop's tokens
        else:
            step = model_step(model, n)
        with one_thread() if device.type == "cpu" and n <= ONE_THREAD_MAX_BATCH else contextlib.nullcontext():
            return sampling_loop(
                step,
                model.config.bits,
                n,
                length,
                temperature,
                top_p,
                prefix,
                generator,
                device,
                progress,
                listen,
                draws,
            )
    finally:
        for module in training:
            module.training = True


def step_engine(compile: bool | str, device: torch.device, dtype: torch.dtype, steps: int) -> str:
    """What runs the steps (see `sample`): "native", "compiled" or "modules"."""
    if compile is True:
        return "compiled"
    if compile is False:
        return "modules"
    if device.type == "cpu" and dtype in (torch.float32, torch.float64) and native.available():
        return "native"
    if steps >= COMPILE_MIN_STEPS and (device.type == "cuda" or compiler_available()):
        return "compiled"
    return "modules"


class ThreadChoice:
    """`NativeStep.sample` at the thread count that measures fastest here: one thread, or all of
    torch's (rows split over them, or at B = 1 the wide depths shared: `native.TEAM_WIDTH`). More
    threads lose when another process holds a core (every barrier then waits for a descheduled
    thread: docs/PERFORMANCE.md), so each count is first timed on TRIAL samples, the fastest runs,
    and every RETIME_EVERY calls another is timed again on TRIAL samples. The samples do not depend
    on the choice: every thread count computes the same numbers."""

    TRIAL = 16  # mutate: skip a tuning constant: the tests read it

    def __init__(self, native_step):
        self.native_step = native_step
        self.choices = sorted({1, native_step.threads})
        self.per_sample: dict[int, float] = {}
        self.calls = 0

    def __call__(self, tokens, uniforms, temperature, top_p):
        retime = self.calls % RETIME_EVERY == RETIME_EVERY - 1
        self.calls += 1
        drawn, at = [], 0
        while at < uniforms.shape[0]:
            untimed = [t for t in self.choices if t not in self.per_sample]
            if untimed or retime:
                threads = untimed[0] if untimed else self.choices[self.calls // RETIME_EVERY % len(self.choices)]
                part, retime = uniforms[at : at + self.TRIAL], False
            else:
                threads, part = min(self.per_sample, key=self.per_sample.get), uniforms[at:]
            self.native_step.threads = threads
            start = time.perf_counter()
            drawn.append(self.native_step.sample(tokens, part, temperature, top_p))
            self.per_sample[threads] = (time.perf_counter() - start) / part.shape[0]
            tokens, at = drawn[-1][0][-1], at + part.shape[0]
        return torch.cat([d[0] for d in drawn]), torch.cat([d[1] for d in drawn])


def model_step(model: SashimiLM, n: int):
    """`model.step` with its state kept here: tokens -> logits, as `FusedStep.step`."""
    state = model.default_state(n)

    def step(tokens: Int[Tensor, " B"]) -> Float[Tensor, "B C"]:
        nonlocal state
        logits, state = model.step(tokens, state)
        return logits

    return step


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def draw(logp: Float[Tensor, "B C"], generator: torch.Generator) -> Int[Tensor, "B 1"]:
    """One class per row with probability exp(logp), by inverse CDF: the first class whose cumulative
    probability exceeds u times the row's total, u ~ U[0, 1) from `generator`. A class of probability
    0 is never drawn (the CDF does not rise there; scaling by the total absorbs its rounding).
    torch.multinomial does the same in 160 us for 16 rows of 256 on one thread here, this in ~10."""
    cdf = logp.exp().cumsum(-1)
    u = torch.rand(logp.shape[0], 1, generator=generator, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=logp.shape[-1] - 1)


def sampling_loop(
    step,
    bits: int,
    n: int,
    length: int,
    temperature: float,
    top_p: float,
    prefix: Int[Tensor, " P"],
    generator: torch.Generator,
    device: torch.device,
    progress,
    listen=None,
    draws=None,
) -> tuple[Int[Tensor, "B T"], Float[Tensor, " B"]]:
    """`length` draws after the prefix, each step's logits tempered, filtered and drawn from here;
    or, given `draws` (tokens, uniforms (S, B), temperature, top_p -> tokens (S, B), log-probabilities
    (S, B)), NATIVE_CHUNK samples at a time drawn by it from the same uniforms."""
    token = torch.full((n,), 2 ** (bits - 1), dtype=torch.long, device=device)
    if prefix.numel():
        check_tokens(prefix, 2**bits)
    for t in range(prefix.shape[0]):
        step(token)
        token = prefix[t].expand(n).to(device)
    out, picked = [], []
    try:
        while draws is not None and len(out) < length:
            chunk = min(NATIVE_CHUNK, length - len(out))
            # the loop below draws u for each step as float32 torch.rand(n, 1): the same numbers, in order
            tokens, logp = draws(
                token, torch.rand(chunk, n, generator=generator, dtype=torch.float32), temperature, top_p
            )
            for s in range(chunk):
                out.append(tokens[s])
                picked.append(logp[s, :, None])
                if listen is not None:
                    listen(tokens[s])
            token = tokens[-1]
            if progress is not None:
                progress.update(chunk)
        for _ in range(length if draws is None else 0):
            logits = step(token)
            logits = (
                logits.float() if temperature == 1.0 else logits.float() / temperature
            )  # a step costs ~0.2 ms: each op counts
            logp = top_p_filter(logits, top_p).log_softmax(-1).cpu()
            token_cpu = draw(logp, generator)
            picked.append(logp.gather(1, token_cpu))
            token_cpu = token_cpu[:, 0]
            token = token_cpu.to(device)
            out.append(token_cpu)
            if listen is not None:
                listen(token_cpu)
            if progress is not None:
                progress.update(1)
    except KeyboardInterrupt:
        done = min(len(out), len(picked))  # Ctrl-C may land between the two appends  # mutate: skip min is symmetric
        raise Interrupted(*sampled(prefix, out[:done], picked[:done], n), done) from None
    return sampled(prefix, out, picked, n)


def sampled(
    prefix: Int[Tensor, " P"], out: list, picked: list, n: int
) -> tuple[Int[Tensor, "B T"], Float[Tensor, " B"]]:
    """The prefix then the tokens drawn, and their mean log-likelihood per generated sample."""
    generated = torch.stack(out, 1) if out else torch.zeros(n, 0, dtype=torch.long)
    loglik = torch.cat(picked, 1).double().sum(1) if picked else torch.zeros(n, dtype=torch.float64)
    return torch.cat([prefix.expand(n, -1).cpu(), generated], 1), loglik / max(len(out), 1)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during sampling, with what was sampled: the prefix and the first `done` tokens drawn
    (`tokens`, `loglik` as `sample` returns them)."""

    def __init__(self, tokens: Int[Tensor, "B T"], loglik: Float[Tensor, " B"], done: int):
        self.tokens, self.loglik, self.done = tokens, loglik, done
