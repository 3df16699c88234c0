"""The official pipeline's state-dict layouts (v3 and v4), written out from ours in NumPy: the
inverse of `sashimi.io.pipeline.convert`, kept apart from it so that the two are independent."""

import numpy as np

V3_KERNEL_NAMES = {"inv_dt": "log_dt", "A_real": "inv_w_real", "A_imag": "w_imag", "l_kernel": "L"}


def pipeline_layout(state: dict, layout: str, seed: int) -> dict[str, np.ndarray]:
    """Our SashimiLM state dict (tensors or arrays) written as the official pipeline's (v3 or v4)
    would hold it, as NumPy arrays of the same dtypes. Pool linears become weight_g / weight_v with
    v = W times a random positive factor per row (g = ||W_row||, computed in float64), so that
    folding them back is exercised beyond the identity."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in state.items():
        value = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        if key == "encoder.embedding.weight":
            out["encoder.0.weight"] = value
            continue
        if key.startswith("decoder."):
            out["decoder.0." + key[len("decoder.") :]] = value
            continue
        name = "model." + key[len("backbone.") :]
        name = name.replace(".norm.m", ".norm.norm.m").replace(".norm.s", ".norm.norm.s")
        pooled = ".d_layers." in name or ".0.linear." in name
        if name.endswith(".linear.weight") and pooled and "output_linear" not in name:
            scale = rng.uniform(0.5, 2.0, (value.shape[0], 1)).astype(value.dtype)  # mutate: skip any range > 0 will do
            out[name[: -len("weight")] + "weight_v"] = value * scale
            norm = np.linalg.norm(value.astype(np.float64), axis=1, keepdims=True)
            out[name[: -len("weight")] + "weight_g"] = norm.astype(value.dtype)
            continue
        if name.endswith(".l_kernel"):
            value = value.reshape(())  # the pipeline's length is a 0-d buffer; ours has shape (1,)
        if layout == "pipeline-v3" and ".layer.layer." in name:
            head, _, tail = name.partition(".layer.layer.")
            if tail.startswith("kernel."):
                param = tail[len("kernel.") :]
                if param == "inv_dt":
                    value = value.reshape(-1)  # mutate: skip NumPy takes any negative size as -1
                if param == "A_imag":
                    value = -value
                out[f"{head}.layer.kernel.kernel.{V3_KERNEL_NAMES.get(param, param)}"] = value
            else:  # D
                out[f"{head}.layer.{tail}"] = value
            continue
        out[name] = value
    return out
