"""The S4 layer forward (kernel convolution + D u, GELU, Linear H -> 2H, GLU) from plain arrays.

Variants (the published pipeline's): Delta = softplus(inv_dt) in place of exp(inv_dt), and
Linear H -> H without GLU in place of Linear H -> 2H + GLU.

Parameters come as a dictionary named like the published S4 block's state dict
(`layer.kernel.inv_dt`, `layer.kernel.A_real`, ..., `layer.D`,
`output_linear.0.weight`); complex values are real views with a trailing axis of 2.
"""

import numpy as np
import scipy.special
from jaxtyping import Complex, Float
from numpy import ndarray

from reference import s4


def as_complex(x: Float[ndarray, "*shape 2"]) -> Complex[ndarray, "*shape"]:
    return x[..., 0] + 1j * x[..., 1]


def gelu(x: Float[ndarray, "*shape"]) -> Float[ndarray, "*shape"]:
    """GELU, exact (erf) form: x/2 (1 + erf(x / sqrt 2))."""
    return 0.5 * x * (1.0 + scipy.special.erf(x / np.sqrt(2.0)))


def sigmoid(x: Float[ndarray, "*shape"]) -> Float[ndarray, "*shape"]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def glu(a: Float[ndarray, "*batch twoH"]) -> Float[ndarray, "*batch H"]:
    """GLU(a) = a[:H] * sigmoid(a[H:]): first half value, second half gate."""
    H = a.shape[-1] // 2
    return a[..., :H] * sigmoid(a[..., H:])


def linear(
    x: Float[ndarray, "*batch I"], W: Float[ndarray, "O I"], b: Float[ndarray, " O"]
) -> Float[ndarray, "*batch O"]:
    return x @ W.T + b


def softplus(x: float) -> float:
    """log(1 + e^x), written so that large x does not overflow."""
    return float(np.logaddexp(0.0, x))


def channel_ssm(params: dict, h: int, dt_transform: str = "exp"):
    """(Lambda, P, B, C or C~, Delta) of channel h; channel h uses SSM copy h mod n_ssm."""
    k = {name: np.asarray(v, dtype=np.float64) for name, v in params.items() if name.startswith("layer.kernel.")}
    n_ssm = k["layer.kernel.A_real"].shape[0]
    j = h % n_ssm
    Lambda = -np.exp(k["layer.kernel.A_real"][j]) - 1j * k["layer.kernel.A_imag"][j]
    P = as_complex(k["layer.kernel.P"])[0, j]
    B = as_complex(k["layer.kernel.B"])[0, j]
    C = as_complex(k["layer.kernel.C"])[0, h]
    inv_dt = float(k["layer.kernel.inv_dt"][h, 0])
    Delta = {"exp": np.exp, "softplus": softplus}[dt_transform](inv_dt)
    return Lambda, P, B, C, Delta


def s4_kernel(params: dict, L: int, dt_transform: str = "exp") -> Float[ndarray, "H L"]:
    """K_k = C^T A_bar^k B_bar per channel, by explicit powers over the full state.

    When `l_kernel` > 0 the stored C is C~ for that length (the published convention)
    and C is recovered by solving (I - A_bar^l_kernel)^T C = C~.
    """
    l_kernel = int(np.asarray(params.get("layer.kernel.l_kernel", 0)))
    H = params["layer.kernel.C"].shape[1]
    K = np.zeros((H, L))
    for h in range(H):
        Lambda, P, B, C, Delta = channel_ssm(params, h, dt_transform)
        A_bar, B_bar = s4.dense_bilinear(s4.dense_A(Lambda, P), s4.conj_pairs(B), Delta)
        C_f = s4.conj_pairs(C)
        if l_kernel > 0:
            C_f = s4.C_from_C_tilde(A_bar, C_f, l_kernel)
        K[h] = s4.kernel_powers(A_bar, B_bar, C_f, L)
    return K


def s4_kernel_condition(params: dict, L: int, dt_transform: str = "exp") -> float:
    """How much a float64 kernel of length L may amplify rounding: the largest 1 / min_i |1 - lambda_i^l|
    over the channels, lambda_i the eigenvalues of A_bar, l the lengths whose (I - A_bar^l) is solved
    or divided by: L (the generating function) and l_kernel (C from C~). A mode that barely decays
    (|lambda| near 1) makes it large."""
    l_kernel = int(np.asarray(params.get("layer.kernel.l_kernel", 0)))
    lengths = [L] + ([l_kernel] if l_kernel > 0 else [])
    eigenvalues = []
    for h in range(params["layer.kernel.C"].shape[1]):
        Lambda, P, B, _, Delta = channel_ssm(params, h, dt_transform)
        A_bar, _ = s4.dense_bilinear(s4.dense_A(Lambda, P), s4.conj_pairs(B), Delta)
        eigenvalues.append(np.linalg.eigvals(A_bar))
    return power_condition(np.concatenate(eigenvalues), lengths)


def power_condition(eigenvalues: Complex[ndarray, " M"], lengths: list[int]) -> float:
    """max over l of 1 / min_i |1 - lambda_i^l|, and at least 1: a case no worse than a plain one
    keeps the row's own rtol."""
    return float(max(1.0, *(1 / np.min(np.abs(1 - eigenvalues**l)) for l in lengths)))


def s4_layer(
    params: dict, u: Float[ndarray, "B L H"], dt_transform: str = "exp", output: str = "glu"
) -> Float[ndarray, "B L H"]:
    """y = GLU(Linear(GELU(K * u + D u))) (output "glu") or Linear(GELU(K * u + D u)) (output
    "linear"), channel by channel, sample by sample."""
    u = np.asarray(u, dtype=np.float64)
    Bsz, L, H = u.shape
    K = s4_kernel(params, L, dt_transform)
    D = np.asarray(params["layer.D"], dtype=np.float64)[0]
    y = np.zeros_like(u)
    for b in range(Bsz):
        for h in range(H):
            y[b, :, h] = s4.causal_convolution(u[b, :, h], K[h]) + D[h] * u[b, :, h]
    W = np.asarray(params["output_linear.0.weight"], dtype=np.float64)
    bias = np.asarray(params["output_linear.0.bias"], dtype=np.float64)
    expected_rows = {"glu": 2 * H, "linear": H}[output]
    if W.shape != (expected_rows, H):
        raise ValueError(f"output_linear.0.weight is {W.shape}; output {output!r} needs ({expected_rows}, {H})")
    z = linear(gelu(y), W, bias)
    return glu(z) if output == "glu" else z
