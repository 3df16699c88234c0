"""The optimizer: the SSM parameter group."""

from sashimi.core.config import OptimizerConfig
from sashimi.training import optimizer


def test_ssm_parameters_get_their_own_group(audio_folder):
    from sashimi.core.config import ModelConfig
    from sashimi.model.lm import SashimiLM

    model = SashimiLM(ModelConfig(d_model=4, n_layers=1, d_state=4))
    groups = optimizer.param_groups(model, lr=0.004, ssm_lr=0.001, spec=OptimizerConfig.from_specs())
    ssm_names = {n for n, p in model.named_parameters() if any(p is q for q in groups[1]["params"])}
    assert groups[1]["lr"] == 0.001 and groups[1]["weight_decay"] == 0.0 and groups[0]["lr"] == 0.004
    assert ssm_names and all(n.rsplit(".", 1)[-1] in ("inv_dt", "A_real", "A_imag", "B", "P") for n in ssm_names)
    assert len(ssm_names) == 5 * sum(1 for n, _ in model.named_parameters() if n.endswith("kernel.inv_dt"))
    assert not any(n.endswith(("kernel.C", "layer.D")) for n in ssm_names)
