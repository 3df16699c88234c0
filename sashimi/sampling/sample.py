"""Sampling from the model in step mode: tempered, nucleus-filtered multinomial draws, one sample at a time.

The recurrence is set up once (never recomputing the convolution per sample); a prefix primes
the state by teacher forcing, exactly as a forward pass over it would.
"""

import math

import torch

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model.lm import SashimiLM


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
) -> tuple[Int[Tensor, "B T"], Float[Tensor, " B"]]:
    """n sequences: the prefix (if any) then `length` sampled tokens; and the mean log-likelihood
    per generated sample under the (tempered, filtered) sampling distribution. `prepared`: the
    caller ran `model.setup_step()` for the current parameters already (it is not repeated)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1]; got {top_p}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    device = next(model.parameters()).device
    model.eval()
    if not prepared:
        model.setup_step()
    state = model.default_state(n)
    token = torch.full((n,), 2 ** (model.config.bits - 1), dtype=torch.long, device=device)
    prefix = prefix if prefix is not None else torch.zeros(0, dtype=torch.long)
    for t in range(prefix.shape[0]):
        _, state = model.step(token, state)
        token = prefix[t].expand(n).to(device)
    out, loglik = [], torch.zeros(n, dtype=torch.float64)
    for _ in range(length):
        logits, state = model.step(token, state)
        logp = top_p_filter(logits.float() / temperature, top_p).log_softmax(-1).cpu()
        token_cpu = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
        loglik += logp.gather(1, token_cpu[:, None])[:, 0].double()
        token = token_cpu.to(device)
        out.append(token_cpu)
        if progress is not None:
            progress.update(1)
    generated = torch.stack(out, 1) if out else torch.zeros(n, 0, dtype=torch.long)
    return torch.cat([prefix.expand(n, -1).cpu(), generated], 1), loglik / max(length, 1)
