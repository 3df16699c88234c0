"""Typed configuration: the model, training, optimizer and loss settings, and the presets.

Every default that is a fact of the published recipe (sample rate, optimizer betas, the SSM
parameter group, the plateau schedule, the loss chunking) has one home: `specs/presets.json`,
read here and nowhere else. CLI flags map one to one onto `TrainConfig`'s fields.
"""

import dataclasses
import math
from dataclasses import asdict, dataclass, field

import specs

DEFAULT_PRESET = "tiny"
DEMO_MINUTES = 3.0  # the stop of a run given neither --max-steps nor --max-minutes (`make run`'s demo)
QUANTIZATIONS = ("mulaw", "linear")
# the published variants (docs/DESIGN.md, "Pipeline variants"): the standalone model's choice first
NORMS = ("layer", "scalar")
DT_TRANSFORMS = ("exp", "softplus")
S4_OUTPUTS = ("glu", "linear")
# how the pool linears are trained: "plain", the weight itself; "pipeline", the official pipeline's
# weight norm (W = g v / ||v|| per output row, g and v the parameters). Both compute the same W.
PARAMETRIZATIONS = ("plain", "pipeline")
# the arithmetic of a training step: "bf16" autocasts the blocks' linear layers to bfloat16 (CPU and
# CUDA); the S4 kernel, its FFT convolution, the output head and the loss stay float32
PRECISIONS = ("float32", "bf16")
# audio rates we read or train at, in Hz: below 1 kHz nothing audible survives; above 384 kHz (the
# highest rate audio interfaces record) a header is corrupt (a 2 GHz header would be resampled to
# about one sample and "learned" perfectly)
SAMPLE_RATE_RANGE = (1000, 384000)


def check_number(
    flag: str,
    value,
    low: int | float | None = None,
    high: int | float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A ValueError naming the flag and its range unless `value` is a finite number in range
    (nan and inf would otherwise pass every comparison below or poison the run)."""
    if value is None:
        return
    lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    where = f" in {lo or '(-inf'}, {hi or 'inf)'}" if (low is not None or high is not None) else ""
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = (
        ok
        and (low is None or (value > low if low_open else value >= low))
        and (high is None or (value < high if high_open else value <= high))
    )
    if not ok:
        raise ValueError(f"{flag} must be a finite number{where}; got {value}")


def preset_names() -> list[str]:
    """The presets of specs/presets.json (entries with a model)."""
    return [
        k for k, v in specs.load("presets").items() if not k.startswith("_") and isinstance(v, dict) and "model" in v
    ]


def preset(name: str) -> dict:
    """{"model": ..., "train": ...} of one preset; an unknown name lists the known ones."""
    if name not in preset_names():
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    return specs.load("presets")[name]


@dataclass
class ModelConfig:
    """The SaShiMi language model (docs/DESIGN.md, "The backbone"): C = 2^bits classes."""

    bits: int = 8
    d_model: int = 64
    n_layers: int = 8
    pool: list[int] = field(default_factory=lambda: [4, 4])
    expand: int = 2
    ff: int = 2
    n_ssm: int | None = 1
    dropout: float = 0.0
    d_state: int = 64
    norm: str = "layer"
    dt_transform: str = "exp"
    s4_output: str = "glu"
    parametrization: str = "plain"

    def __post_init__(self):
        for name, allowed in (
            ("norm", NORMS),
            ("dt_transform", DT_TRANSFORMS),
            ("s4_output", S4_OUTPUTS),
            ("parametrization", PARAMETRIZATIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"model {name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")

    @property
    def n_classes(self) -> int:
        return 2**self.bits

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def s4(self) -> "S4Options":
        return S4Options(self.d_state, self.n_ssm, self.dropout, self.dt_transform, self.s4_output)


@dataclass(frozen=True)
class S4Options:
    """What every S4 layer of a model shares: the slice of ModelConfig an S4 layer is built from
    (passed whole, so that no two neighbours of one type can be swapped on the way down)."""

    d_state: int = 64  # N, the state size (N/2 conjugate pairs)
    n_ssm: int | None = None  # independent (A, B) copies, None for one per channel
    dropout: float = 0.0
    dt_transform: str = "exp"
    output: str = "glu"  # "glu": Linear(H, 2H) + GLU; "linear": Linear(H, H)


def model_config(preset_name: str, bits: int, **overrides) -> ModelConfig:
    """The model of a preset at `bits`, with fields overridden."""
    return ModelConfig(bits=bits, **{**preset(preset_name)["model"], **overrides})


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW and the plateau schedule (docs/DESIGN.md, "Optimizer and schedule"); specs/presets.json "optimizer"."""

    betas: tuple[float, float]
    weight_decay: float
    ssm_lr: float
    ssm_weight_decay: float
    plateau_factor: float
    plateau_patience: int

    @classmethod
    def from_specs(cls) -> "OptimizerConfig":
        data = specs.load("presets")["optimizer"]
        return cls(
            **{f.name: tuple(data[f.name]) if f.name == "betas" else data[f.name] for f in dataclasses.fields(cls)}
        )


@dataclass(frozen=True)
class LossConfig:
    """Positions per chunk of the 16-bit loss and of the metrics (docs/DESIGN.md, "16-bit loss"); specs/presets.json
    "loss"."""

    batch_chunk_size: int
    metric_chunk_positions: int

    @classmethod
    def from_specs(cls) -> "LossConfig":
        data = specs.load("presets")["loss"]
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass
class TrainConfig:
    """Every field is a flag: --preset, --data, --bits, ... (None: the preset's, or the optimizer spec's, value)."""

    preset: str = DEFAULT_PRESET
    data: str | None = None
    bits: int | None = None
    quantization: str | None = None
    sample_rate: int | None = None
    seq_len: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    max_steps: int | None = None
    max_minutes: float | None = None  # neither stop given: DEMO_MINUTES (runs.starting_point says so)
    out: str = "runs"
    resume: str | None = None
    init: str | None = None
    device: str = "auto"
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 16
    ssm_lr: float | None = None
    dropout: float | None = None
    grad_clip: float = 1.0
    sample_seconds: float = 1.0
    parametrization: str | None = None
    precision: str = "float32"
    allow_changed_data: bool = False

    def resolved(self, pool: list[int] | None = None) -> "TrainConfig":
        """Fill every None from the preset (docs/DESIGN.md, "Presets") and check the values;
        `pool`: the model's, when it is not the preset's (training from --init)."""
        defaults = preset(self.preset)["train"]
        c = dataclasses.replace(self)
        for name in ("bits", "quantization", "sample_rate", "seq_len", "batch_size", "lr"):
            if getattr(c, name) is None:
                setattr(c, name, defaults[name])
        if c.ssm_lr is None:
            c.ssm_lr = OptimizerConfig.from_specs().ssm_lr
        if c.bits not in (8, 16):
            raise ValueError(f"--bits must be 8 or 16; got {c.bits}")
        if c.quantization not in QUANTIZATIONS:
            raise ValueError(f"--quantization must be mulaw or linear; got {c.quantization!r}")
        if c.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}; got {c.precision!r}")
        multiple = math.prod(pool or preset(self.preset)["model"]["pool"])
        if c.seq_len < 1 or c.seq_len % multiple:
            raise ValueError(f"--seq-len must be a positive multiple of prod(pool) = {multiple}; got {c.seq_len}")
        check_number("--dropout", c.dropout, 0.0, 1.0, high_open=True)
        check_number("--batch-size", c.batch_size, 1)
        check_number("--lr", c.lr, 0.0)
        check_number("--ssm-lr", c.ssm_lr, 0.0)
        check_number("--grad-clip", c.grad_clip, 0.0, low_open=True)
        check_number("--max-steps", c.max_steps, 1)
        if c.max_minutes != math.inf:  # inf: no time limit (the run stops at --max-steps, or at Ctrl-C)
            check_number("--max-minutes", c.max_minutes, 0.0, low_open=True)
        check_number("--eval-every", c.eval_every, 1)
        check_number("--eval-batches", c.eval_batches, 1)
        check_number("--sample-seconds", c.sample_seconds, 0.0)
        check_number("--sample-rate", c.sample_rate, *SAMPLE_RATE_RANGE)
        check_number("--seed", c.seed, 0, 2**63 - 1)
        if c.max_steps is None and c.max_minutes is None:
            c.max_minutes = DEMO_MINUTES  # the demo's stop (runs.starting_point tells the user)
        return c

    def model_config(self) -> ModelConfig:
        """The preset's model at --bits; --dropout and --parametrization, when given, replace the preset's."""
        given = {k: getattr(self, k) for k in ("dropout", "parametrization") if getattr(self, k) is not None}
        return model_config(self.preset, self.bits, **given)


@dataclass(frozen=True)
class AudioSettings:
    """How a checkpoint's model reads and writes audio: what generation and evaluation need."""

    quantization: str
    sample_rate: int
    seq_len: int


def audio_settings(saved_train: dict | None) -> AudioSettings:
    """From a checkpoint's training configuration; values it lacks (an imported checkpoint has
    none) come from the preset it names, else the default preset."""
    saved_train = saved_train or {}
    defaults = preset(saved_train.get("preset") or DEFAULT_PRESET)["train"]
    return AudioSettings(*(saved_train.get(k) or defaults[k] for k in ("quantization", "sample_rate", "seq_len")))


def default_sample_rate() -> int:
    """The default preset's sample rate (what the embedded synthetic corpus is written at)."""
    return preset(DEFAULT_PRESET)["train"]["sample_rate"]
