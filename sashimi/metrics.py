"""Loss and evaluation metrics (DESIGN section 4), without ever materializing (B, L, C) logits for 16-bit.

loss: mean cross-entropy in nats over non-padding positions (targets -100 are ignored);
bits_per_sample = loss / ln 2; bpb = bits_per_sample / (bits / 8); perplexity = exp(loss);
accuracy and accuracy@k (k = 3, 5, 10): the target among the k most likely classes.
"""

import math

import torch
import torch.nn.functional as F

from sashimi.data import IGNORE_INDEX
from sashimi.shapes import Float, Int, Tensor

TOP_K = (3, 5, 10)
# 1024 positions x 65536 classes x 4 bytes = 256 MiB of logits at most per chunk
CHUNK_POSITIONS = 1024


def chunked_options() -> "torch.nn.LinearCrossEntropyOptions":
    """The chunked path measured in DESIGN section 4 (12.3 s, 0.62 GB for a 1-s 16-bit clip)."""
    return torch.nn.LinearCrossEntropyOptions(batch_chunk_size=1024, chunking_method=None, acc_policy="accurate")


def loss_sum_and_count(
    features: Float[Tensor, "B L H"], weight: Float[Tensor, "C H"], bias: Float[Tensor, " C"], targets: Int[Tensor, "B L"], chunked: bool
) -> tuple[Float[Tensor, ""], int]:
    """Summed cross-entropy (nats) over non-padding positions, and their count.

    chunked: F.linear_cross_entropy with chunking, so no (B L, C) logits tensor exists;
    otherwise logits then F.cross_entropy (what 8-bit training uses).
    """
    x, y = features.reshape(-1, features.shape[-1]), targets.reshape(-1)
    count = int((y != IGNORE_INDEX).sum())
    if chunked:
        total = F.linear_cross_entropy(x, weight, y, linear_bias=bias, reduction="sum", ignore_index=IGNORE_INDEX, options=chunked_options())
    else:
        total = F.cross_entropy(F.linear(x, weight, bias), y, reduction="sum", ignore_index=IGNORE_INDEX)
    return total, count


class MetricSums:
    """Running sums over positions, so metrics over a whole dataset weight every position equally."""

    def __init__(self, bits: int):
        self.bits, self.nll, self.count = bits, 0.0, 0
        self.correct = dict.fromkeys((1, *TOP_K), 0)

    @torch.no_grad()
    def add(self, features: Float[Tensor, "B L H"], weight: Float[Tensor, "C H"], bias: Float[Tensor, " C"], targets: Int[Tensor, "B L"]) -> None:
        x, y = features.reshape(-1, features.shape[-1]), targets.reshape(-1)
        keep = y != IGNORE_INDEX
        x, y = x[keep], y[keep]
        for start in range(0, y.shape[0], CHUNK_POSITIONS):
            logits = F.linear(x[start : start + CHUNK_POSITIONS], weight, bias).float()
            target = y[start : start + CHUNK_POSITIONS]
            self.nll += float(F.cross_entropy(logits, target, reduction="sum"))
            top = logits.topk(max(TOP_K), dim=-1).indices
            hits = top == target[:, None]
            for k in self.correct:
                self.correct[k] += int(hits[:, :k].any(-1).sum())
        self.count += int(y.shape[0])

    def result(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no non-padding positions to evaluate")
        loss = self.nll / self.count
        bits_per_sample = loss / math.log(2)
        out = {
            "loss": loss,
            "bits_per_sample": bits_per_sample,
            "bpb": bits_per_sample / (self.bits / 8),
            "accuracy": self.correct[1] / self.count,
            "perplexity": math.exp(min(loss, 700.0)),
            "positions": self.count,
        }
        out.update({f"accuracy@{k}": self.correct[k] / self.count for k in TOP_K})
        return out


def evaluate(model, batches, bits: int, device: torch.device, max_batches: int | None = None) -> dict[str, float]:
    """Metrics of `model` over (x, y) batches, in eval mode; the model's mode is restored after."""
    sums = MetricSums(bits)
    was_training = model.training
    model.eval()
    head = model.decoder.output_transform
    with torch.no_grad():
        for i, (x, y) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            sums.add(model.features(x.to(device)), head.weight, head.bias, y.to(device))
    model.train(was_training)
    return sums.result()


def unigram_bits(tokens, n_classes: int) -> float:
    """Entropy (bits per sample) of the token histogram: the baseline a model must beat."""
    counts = torch.bincount(torch.as_tensor(tokens).reshape(-1).long(), minlength=n_classes).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())
