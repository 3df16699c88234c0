"""The mutation catalogue: realistic bugs, each one exact replacement in the source.

Every entry's `find` text must occur exactly once in its file (`tests/harness/test_mutation.py`
checks it on every run), so the catalogue survives refactors or says which entry went stale.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    """Replace the one occurrence of `find` in `file` by `replace` (and add `append` at its end)."""

    id: str
    file: str
    find: str
    replace: str
    what: str
    append: str = ""


FLIP = "\n\nclass Flip(nn.Module):\n    def forward(self, x):\n        return torch.cat(x.chunk(2, dim=-1)[::-1], dim=-1)\n"


CATALOGUE = [
    Mutant("uppool-no-shift", "sashimi/model/pool.py", "x = F.pad(x[:, :-1], (0, 0, 1, 0))", "x = x", "UpPool without the causal one-step shift"),
    Mutant("uppool-step-late", "sashimi/model/pool.py", "return [zeros] * self.pool", "return [zeros] * (self.pool + 1)", "step-mode UpPool buffer emits one sample late"),
    Mutant("downpool-step-late", "sashimi/model/pool.py", "if len(state) < self.pool:", "if len(state) <= self.pool:", "step-mode DownPool buffer emits one sample late"),
    Mutant("downpool-reshape-order", "sashimi/model/pool.py", "return x.reshape(B, L // pool, pool, H).transpose(2, 3).reshape(B, L // pool, H * pool)",
           "return x.reshape(B, L // pool, H * pool)", "DownPool reshape order swapped (plain C-order reshape)"),
    Mutant("uppool-reshape-order", "sashimi/model/pool.py", "return x.reshape(B, L, HP // pool, pool).transpose(2, 3).reshape(B, L * pool, HP // pool)",
           "return x.reshape(B, L * pool, HP // pool)", "UpPool reshape order swapped"),
    Mutant("centre-skip-dropped", "sashimi/model/backbone.py", "            x = x + skips.pop()\n        idle_stages", "            skips.pop()\n        idle_stages",
           "skip connection around the centre dropped in step mode"),
    Mutant("stage-skip-dropped", "sashimi/model/backbone.py", "            x = x + stage_input\n        return self.norm(x)\n", "        return self.norm(x)\n",
           "skip connection around an up stage's blocks dropped"),
    Mutant("final-norm-dropped", "sashimi/model/backbone.py", "            x = x + stage_input\n        return self.norm(x)\n", "            x = x + stage_input\n        return x\n",
           "final LayerNorm dropped"),
    Mutant("prenorm-dropped", "sashimi/model/blocks.py", "return self.dropout(self.layer(self.norm(x), *extra))", "return self.dropout(self.layer(x, *extra))",
           "residual block without its pre-norm LayerNorm"),
    Mutant("ff-no-activation", "sashimi/model/blocks.py", "nn.Sequential(nn.Linear(H, H * expand), nn.GELU())", "nn.Sequential(nn.Linear(H, H * expand), nn.Identity())",
           "feed-forward block without its GELU"),
    Mutant("gelu-to-relu", "sashimi/model/s4.py", "return self.dropout(F.gelu(spectral_conv(u, K_f) + self.D * u))", "return self.dropout(F.relu(spectral_conv(u, K_f) + self.D * u))",
           "GELU replaced by ReLU in the S4 layer"),
    Mutant("D-dropped", "sashimi/model/s4.py", "return self.dropout(F.gelu(spectral_conv(u, K_f) + self.D * u))", "return self.dropout(F.gelu(spectral_conv(u, K_f)))",
           "the D u skip term dropped"),
    Mutant("conv-wrong-half", "sashimi/model/s4.py", "return torch.fft.irfft(u_f * K_f, n=2 * L, dim=1)[:, :L]", "return torch.fft.irfft(u_f * K_f, n=2 * L, dim=1)[:, L:]",
           "FFT convolution keeps the wrapped-around half (not causal)"),
    Mutant("woodbury-sign", "sashimi/model/cauchy.py", "K_hat = torch.complex(c, s) * (rho[:, 0] - c * t)", "K_hat = torch.complex(c, s) * (rho[:, 0] + c * t)",
           "sign flipped in the Woodbury correction"),
    Mutant("Q-untied", "sashimi/model/cauchy.py", "    Q = P.conj()\n    v = dt * torch.stack([C_tilde * B, C_tilde * P, Q * B, Q * P])\n    W = ",
           "    Q = P\n    v = dt * torch.stack([C_tilde * B, C_tilde * P, Q * B, Q * P])\n    W = ", "Q untied from P (Q = P instead of conj P)"),
    Mutant("pair-term-conj", "sashimi/model/cauchy.py", "W = torch.cat([4 * v.real, -4 * (v * w.conj()).real])", "W = torch.cat([4 * v.real, -4 * (v * w).real])",
           "conjugate dropped in the conjugate-pair term of the Cauchy sum"),
    Mutant("step-conj-half-dropped", "sashimi/model/recurrence.py", "(2 * C_full[:, : kernel.N2]).conj().resolve_conj()", "(C_full[:, : kernel.N2]).conj().resolve_conj()",
           "step mode drops the conjugate half of the state from the output (Re(C x) instead of 2 Re)"),
    Mutant("zoh-for-bilinear", "sashimi/model/dplr.py", "A_bar = torch.linalg.solve(left, I + half * A)", "A_bar = torch.linalg.matrix_exp(2 * half * A)",
           "zero-order hold in place of the bilinear A_bar (C~ conversion, dense step)"),
    Mutant("C-for-C-tilde", "sashimi/model/kernel.py", "            C_full = torch.linalg.solve((I - torch.linalg.matrix_power(A_bar, l)).mT, C_full)",
           "            C_full = C_full", "stored C~ used as C in step mode (the solve skipped)"),
    Mutant("doubling-sign", "sashimi/model/kernel.py", "C_full = ((I + torch.linalg.matrix_power(A_bar, l)).mT @ C_full[..., None])[..., 0]",
           "C_full = ((I - torch.linalg.matrix_power(A_bar, l)).mT @ C_full[..., None])[..., 0]", "C~ length doubling multiplies by (I - A^l) instead of (I + A^l)"),
    Mutant("dt-softplus", "sashimi/model/kernel.py", "dt = torch.exp(self.inv_dt)", "dt = torch.nn.functional.softplus(self.inv_dt)", "softplus in place of exp for Delta (the pipeline's, not the standalone's)"),
    Mutant("frequency-grid", "sashimi/model/cauchy.py", "half = math.pi * k / L", "half = math.pi * k / (L + 1)", "kernel evaluated on the roots of unity of the wrong length"),
    Mutant("B-clip-dropped", "sashimi/model/hippo.py", "B_rot.imag.clamp(-B_clip, B_clip)", "B_rot.imag", "HiPPO init without the Im(B) clip"),
    Mutant("cache-ignores-edits", "sashimi/model/kernel.py", "(id(t), t._version, t.data_ptr(), t.dtype, t.device)", "(id(t), t.data_ptr(), t.dtype, t.device)",
           "kernel cache not invalidated by in-place parameter changes"),
    Mutant("glu-halves-swapped", "sashimi/model/s4.py", "self.output_linear = nn.Sequential(nn.Linear(H, 2 * H), nn.GLU(dim=-1))",
           "self.output_linear = nn.Sequential(nn.Linear(H, 2 * H), Flip(), nn.GLU(dim=-1))", "GLU value and gate halves swapped", append=FLIP),
    Mutant("l-output-slicing", "sashimi/model/lm.py", "return self.output_transform(x[:, -self.l_output :])", "return self.output_transform(x[:, : self.l_output])",
           "decoder keeps the first k positions instead of the last k"),
    Mutant("token-range-off-by-one", "sashimi/model/lm.py", "bad = (tokens < 0) | (tokens >= n_classes)", "bad = (tokens < 0) | (tokens > n_classes)",
           "token C accepted (range check off by one)"),
    Mutant("mulaw-off-by-one", "sashimi/audio/quantize.py", "    return quantize_unit((e + 1) / 2, bits)\n",
           "    return (quantize_unit((e + 1) / 2, bits) + 1).clamp(max=2**bits - 1)\n", "mu-law tokens one level high"),
    Mutant("ssm-lr-global", "sashimi/training/optimizer.py", '{"params": ssm, "lr": ssm_lr, "weight_decay": spec.ssm_weight_decay}', '{"params": ssm, "lr": lr, "weight_decay": spec.ssm_weight_decay}',
           "SSM parameter group given the global learning rate"),
    Mutant("plateau-factor", "sashimi/training/optimizer.py", "factor=spec.plateau_factor", "factor=0.5", "plateau schedule factor 0.5 instead of 0.2"),
    Mutant("no-grad-clip", "sashimi/training/optimizer.py", "        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)\n", "", "gradient clipping dropped"),
    Mutant("bpb-inverted", "sashimi/training/metrics.py", '"bpb": bits_per_sample / (self.bits / 8)', '"bpb": bits_per_sample * (self.bits / 8)', "bpb multiplied by bytes instead of divided"),
    Mutant("targets-not-shifted", "sashimi/audio/dataset.py", "    x[1:n] = tokens[: n - 1]\n", "    x[:n] = tokens\n", "inputs not shifted by one against the targets"),
]
