"""Loss and evaluation metrics (docs/DESIGN.md, "Loss and metrics"), without ever materializing (B, L, C) logits for
16-bit.

loss: mean cross-entropy in nats over non-padding positions (targets -100 are ignored);
bits_per_sample = loss / ln 2; bpb = bits_per_sample / (bits / 8); perplexity = exp(loss);
accuracy and accuracy@k (k = 3, 5, 10): the target among the k most likely classes.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from sashimi.audio.dataset import IGNORE_INDEX
from sashimi.core.config import PRECISIONS, LossConfig
from sashimi.core.shapes import Float, Int, Tensor

TOP_K = (3, 5, 10)
# the metrics `MetricSums.result` gives, in the order evaluate prints them and the golden file keeps them
METRIC_NAMES = ("loss", "bits_per_sample", "bpb", "accuracy", *(f"accuracy@{k}" for k in TOP_K), "perplexity")


def chunked_options() -> "torch.nn.LinearCrossEntropyOptions":
    """The chunked path measured in docs/DESIGN.md, "16-bit loss": whole chunks of positions,
    no automatic chunking (which is 15x slower there), accurate accumulation."""
    return torch.nn.LinearCrossEntropyOptions(
        batch_chunk_size=LossConfig.from_specs().batch_chunk_size, chunking_method=None, acc_policy="accurate"
    )


def loss_sum_and_count(
    features: Float[Tensor, "B L H"],
    weight: Float[Tensor, "C H"],
    bias: Float[Tensor, " C"],
    targets: Int[Tensor, "B L"],
    chunked: bool,
) -> tuple[Float[Tensor, ""], int]:
    """Summed cross-entropy (nats) over non-padding positions, and their count.

    chunked: F.linear_cross_entropy with chunking, so no (B L, C) logits tensor exists;
    otherwise logits then F.cross_entropy (what 8-bit training uses).
    """
    x, y = features.reshape(-1, features.shape[-1]), targets.reshape(-1)
    count = int((y != IGNORE_INDEX).sum())
    if chunked:
        total = F.linear_cross_entropy(
            x, weight, y, linear_bias=bias, reduction="sum", ignore_index=IGNORE_INDEX, options=chunked_options()
        )
    else:
        total = F.cross_entropy(F.linear(x, weight, bias), y, reduction="sum", ignore_index=IGNORE_INDEX)
    return total, count


class LossModel(nn.Module):
    """What training differentiates (and DDP wraps): tokens and targets in, (summed loss, count)
    out. 16-bit uses the chunked linear cross-entropy, so no (B, L, 65536) logits tensor exists.
    precision "bf16": the backbone under bf16 autocast (its S4 kernels and convolutions keep
    float32: `SSMKernel.forward`), the head and the loss in float32 from float32 features."""

    def __init__(self, lm: nn.Module, precision: str = "float32"):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        self.lm, self.precision = lm, precision

    def forward(self, x: Int[Tensor, "B L"], y: Int[Tensor, "B L"]) -> tuple[Float[Tensor, ""], int]:
        head = self.lm.decoder.output_transform
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            features = self.lm.features(x)
        features = features.to(head.weight.dtype)
        return loss_sum_and_count(features, head.weight, head.bias, y, chunked=self.lm.config.bits > 8)


class MetricSums:
    """Running sums over positions, so metrics over a whole dataset weight every position equally."""

    def __init__(self, bits: int):
        self.bits, self.nll, self.count = bits, 0.0, 0
        self.correct = dict.fromkeys((1, *TOP_K), 0)

    @torch.no_grad()
    def add(
        self,
        features: Float[Tensor, "B L H"],
        weight: Float[Tensor, "C H"],
        bias: Float[Tensor, " C"],
        targets: Int[Tensor, "B L"],
    ) -> None:
        x, y = features.reshape(-1, features.shape[-1]), targets.reshape(-1)
        keep = y != IGNORE_INDEX
        x, y = x[keep], y[keep]
        # a chunk of 16-bit logits takes chunk x 65536 x 4 bytes (256 MiB for 1024 positions)
        chunk = LossConfig.from_specs().metric_chunk_positions
        for start in range(0, y.shape[0], chunk):
            logits = F.linear(x[start : start + chunk], weight, bias).float()
            target = y[start : start + chunk]
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
