"""The SaShiMi backbone: a causal U-Net of DownPools, S4 + FF residual blocks and UpPools.

Layout (pool [4, 4], expand 2, n_layers 8): DownPool H -> 2H, DownPool 2H -> 4H; centre
n_layers x (S4, FF) at 4H and L/16; up: UpPool 4H -> 2H, n_layers x (S4, FF) at L/4;
UpPool 2H -> H, n_layers x (S4, FF) at L; final LayerNorm(H). Skips: the centre output
gets the last DownPool's output added; each up stage is x = UpPool(x) + the matching
down-path tensor, and that sum is also added around the stage's blocks.
Module names (`d_layers`, `c_layers`, `u_layers`, `norm`) are the published ones.
"""

import math

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from sashimi.core.config import ModelConfig
from sashimi.core.shapes import Float, Tensor, check_width
from sashimi.model.blocks import ff_block, s4_block
from sashimi.model.pool import DownPool, UpPool


class Backbone(nn.Module):
    def __init__(self, config: ModelConfig):
        """The backbone of `config` (its `bits` aside); `norm`, `dt_transform`, `s4_output` are the
        published variants (docs/DESIGN.md, "Pipeline variants"); the final norm is an
        `nn.LayerNorm` in every variant."""
        super().__init__()
        self.d_model, self.pool = config.d_model, tuple(config.pool)
        expand, options = config.expand, config.s4

        def stage_blocks(H: int) -> list[nn.Module]:
            blocks = []
            for _ in range(config.n_layers):
                blocks.append(s4_block(H, options, config.norm))
                if config.ff > 0:
                    blocks.append(ff_block(H, config.ff, config.dropout, config.norm))
            return blocks

        H = config.d_model
        d_layers = []
        for p in self.pool:
            d_layers.append(DownPool(H, expand, p))
            H *= expand
        c_layers = stage_blocks(H)
        u_layers = []
        for p in self.pool[::-1]:
            u_layers.append(nn.ModuleList([UpPool(H, expand, p), *stage_blocks(H // expand)]))
            H //= expand
        self.d_layers = nn.ModuleList(d_layers)
        self.c_layers = nn.ModuleList(c_layers)
        self.u_layers = nn.ModuleList(u_layers)
        self.norm = nn.LayerNorm(H)
        self.parametrize(config.parametrization)

    def parametrize(self, kind: str) -> None:
        """Train the pool linears' weights as the pipeline does ("pipeline": W = g v / ||v|| per output
        row, torch's weight_norm with dim 0, g and v the parameters) or as the weights themselves
        ("plain": g v / ||v|| folded into W). The function computed is the same either way."""
        for pool in [*self.d_layers, *(stage[0] for stage in self.u_layers)]:
            normed = parametrize.is_parametrized(pool.linear, "weight")
            if kind == "pipeline" and not normed:
                weight_norm(pool.linear, dim=0)
            elif kind == "plain" and normed:
                parametrize.remove_parametrizations(pool.linear, "weight")

    @property
    def multiple(self) -> int:
        """Lengths must be multiples of prod(pool)."""
        return math.prod(self.pool)

    def check_length(self, L: int) -> None:
        if L % self.multiple:
            raise ValueError(
                f"sequence length must be a multiple of prod(pool) = {self.multiple} (pool {list(self.pool)}); got L = "
                f"{L}"
            )

    def forward(self, x: Float[Tensor, "B L H"]) -> Float[Tensor, "B L H"]:
        self.check_length(x.shape[1])
        check_width(x, self.d_model, "Backbone")
        skips = [x]
        for pool in self.d_layers:
            x = pool(x)
            skips.append(x)
        for block in self.c_layers:
            x = block(x)
        x = x + skips.pop()
        for up, *blocks in self.u_layers:
            x = up(x) + skips.pop()
            stage_input = x
            for block in blocks:
                x = block(x)
            x = x + stage_input
        return self.norm(x)

    # --- step mode: one sample at a time -------------------------------------------------

    def setup_step(self, mode: str = "linear") -> None:
        """Build every S4 recurrence (`mode`: sashimi.model.stepping); call again after the parameters change."""
        for stage in (self.d_layers, self.c_layers, *self.u_layers):
            for module in stage:
                module.setup_step(mode)

    def default_state(self, batch: int) -> dict:
        return {
            "down": [pool.default_state(batch) for pool in self.d_layers],
            "center": [block.default_state(batch) for block in self.c_layers],
            "up": [[layer.default_state(batch) for layer in stage] for stage in self.u_layers],
        }

    def step(self, x: Float[Tensor, "B H"], state: dict) -> tuple[Float[Tensor, "B H"], dict]:
        """One fine-rate sample. A stage runs only when its DownPool has emitted: the centre
        every prod(pool) samples, each up stage every prod(its coarser pools) samples."""
        check_width(x, self.d_model, "Backbone.step")
        state = {"down": list(state["down"]), "center": list(state["center"]), "up": [list(s) for s in state["up"]]}
        skips = []
        for i, pool in enumerate(self.d_layers):
            skips.append(x)
            x, state["down"][i] = pool.step(x, state["down"][i])
            if x is None:
                break
        if x is not None:
            skips.append(x)
            for j, block in enumerate(self.c_layers):
                x, state["center"][j] = block.step(x, state["center"][j])
            x = x + skips.pop()
        idle_stages = len(self.d_layers) - len(skips) if x is None else 0
        for k, stage in enumerate(self.u_layers):
            if k < idle_stages:
                continue
            layers = state["up"][k]
            x, layers[0] = stage[0].step(x, layers[0])
            x = x + skips.pop()
            stage_input = x
            for m, block in enumerate(stage[1:], start=1):
                x, layers[m] = block.step(x, layers[m])
            x = x + stage_input
        return self.norm(x), state
