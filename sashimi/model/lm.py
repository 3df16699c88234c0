"""The SaShiMi language model: tokens -> Embedding -> backbone -> SequenceDecoder -> logits.

8-bit audio has C = 256 classes, 16-bit C = 65536. The configuration is
`sashimi.core.config.ModelConfig`; presets live in `specs/presets.json`.
"""

import dataclasses

import torch
from torch import nn

from sashimi.core.config import ModelConfig
from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model.backbone import Backbone


def check_tokens(tokens: Tensor, n_classes: int) -> None:
    """Tokens must lie in [0, C): name the first offending value and its position."""
    bad = (tokens < 0) | (tokens >= n_classes)
    if bool(bad.any()):
        position = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"tokens must lie in [0, {n_classes - 1}] (C = {n_classes}); got {int(tokens[position])} at position "
            f"{position}"
        )


class Encoder(nn.Module):
    """Embedding(C, d): (B, L) or (B, L, 1) integer tokens in [0, C) -> (B, L, d)."""

    def __init__(self, n_classes: int, d: int):
        super().__init__()
        self.embedding = nn.Embedding(n_classes, d)

    def forward(self, tokens: Int[Tensor, "B L"] | Int[Tensor, "B L 1"]) -> Float[Tensor, "B L H"]:
        if tokens.ndim == 3:
            tokens = tokens.squeeze(-1)
        check_tokens(tokens, self.embedding.num_embeddings)
        return self.embedding(tokens)


class Decoder(nn.Module):
    """SequenceDecoder: Linear(d, C) on the positions that `l_output` keeps.

    l_output None -> every position (B, L, C); 0 -> the last position, squeezed (B, C);
    k > 0 -> the last k positions (B, k, C).
    """

    def __init__(self, d: int, n_classes: int, l_output: int | None = None):
        super().__init__()
        if l_output is not None and l_output < 0:
            raise ValueError(f"l_output must be None, 0 or a positive count; got {l_output}")
        self.l_output = l_output
        self.output_transform = nn.Linear(d, n_classes)

    def forward(
        self, x: Float[Tensor, "B L H"]
    ) -> Float[Tensor, "B L C"] | Float[Tensor, "B C"] | Float[Tensor, "B K C"]:
        if self.l_output is None:
            return self.output_transform(x)
        if self.l_output == 0:
            return self.output_transform(x[:, -1])
        if self.l_output > x.shape[1]:
            raise ValueError(f"l_output = {self.l_output} is longer than the sequence (L = {x.shape[1]})")
        return self.output_transform(x[:, -self.l_output :])

    def one_position(self, x: Float[Tensor, "B H"]) -> Float[Tensor, "B C"]:
        """The logits of one position (stateless: not part of the step protocol)."""
        return self.output_transform(x)


class SashimiLM(nn.Module):
    def __init__(self, config: ModelConfig, l_output: int | None = None):
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder(c.n_classes, c.d_model)
        self.backbone = Backbone(c)
        self.decoder = Decoder(c.d_model, c.n_classes, l_output)

    def features(self, tokens: Int[Tensor, "B L"] | Int[Tensor, "B L 1"]) -> Float[Tensor, "B L H"]:
        """The backbone's output, before the decoder (what a chunked loss consumes)."""
        self.backbone.check_length(tokens.shape[1])
        return self.backbone(self.encoder(tokens))

    def forward(
        self, tokens: Int[Tensor, "B L"] | Int[Tensor, "B L 1"]
    ) -> Float[Tensor, "B L C"] | Float[Tensor, "B C"] | Float[Tensor, "B K C"]:
        return self.decoder(self.features(tokens))

    def setup_step(self, mode: str = "linear") -> None:
        self.backbone.setup_step(mode)

    def default_state(self, batch: int) -> dict:
        return self.backbone.default_state(batch)

    def step(self, tokens: Int[Tensor, " B"], state: dict) -> tuple[Float[Tensor, "B C"], dict]:
        """Logits for the next sample given one token per batch element."""
        x, state = self.backbone.step(self.encoder(tokens[:, None])[:, 0], state)
        return self.decoder.one_position(x), state

    def parametrize(self, kind: str) -> None:
        """The pool linears trained as `kind` (`Backbone.parametrize`), the configuration updated."""
        self.backbone.parametrize(kind)
        self.config = dataclasses.replace(self.config, parametrization=kind)

    def num_params(self, part: str | None = None) -> int:
        """Number of parameters (buffers such as `l_kernel` excluded); of `encoder`,
        `backbone` or `decoder` when `part` is given. Embedding and decoder are not tied."""
        module = self if part is None else getattr(self, part)
        return sum(p.numel() for p in module.parameters())


def build(config: ModelConfig, l_output: int | None = None, dtype: torch.dtype = torch.float32) -> SashimiLM:
    return SashimiLM(config, l_output).to(dtype)
