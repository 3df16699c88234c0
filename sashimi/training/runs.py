"""Run folders: created exclusively, resumed only under the run's own configuration, and the metrics
log kept consistent with the checkpoint (nothing logged after it survives a resume)."""

import dataclasses
import json
import time
from pathlib import Path
from typing import NamedTuple

from torch import nn

from sashimi.core.config import DEMO_MINUTES, PARAMETRIZATIONS, ModelConfig, TrainConfig
from sashimi.io import checkpoint
from sashimi.model.lm import SashimiLM

# what a resumed run may change (a notice says so): when it stops, where and in what precision it
# runs, what it samples at the end; everything else would break "resume equals a straight run"
# (docs/DESIGN.md, "Optimizer and schedule"). The data folder may move: it is matched by its files
# (data.check_data_unchanged).
RESUMABLE = ("max_steps", "max_minutes", "device", "precision", "sample_seconds")
PER_CALL = ("resume", "out", "allow_changed_data")  # how this command was called, never the run's


def new_run_dir(out: str | Path) -> Path:
    """OUT/<timestamp>, or <timestamp>-2, -3, ...: created here, exclusively (mkdir fails on an
    existing folder), so runs started in the same second never share one."""
    out = Path(out)
    run_dir = out / time.strftime("%Y%m%d-%H%M%S")
    stem, n = run_dir.name, 1
    while True:
        try:
            out.mkdir(parents=True, exist_ok=True)
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            if not out.is_dir():
                raise OSError(f"cannot create a folder in {out}: it is a file; give a folder with --out") from None
            n += 1
            run_dir = run_dir.with_name(f"{stem}-{n}")
        except OSError as e:
            raise OSError(f"cannot create a folder in {out}: {e.strerror or e}; give a writable --out") from None


def resolve_resume(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise checkpoint.CheckpointError(f"--resume: no checkpoint at {p}")
    return p


def given_flags(config: TrainConfig) -> frozenset[str]:
    """The settings a configuration built in code gives: those not at their defaults."""
    default = TrainConfig()
    return frozenset(
        f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != getattr(default, f.name)
    )


def resumed_config(config: TrainConfig, given: frozenset[str]) -> tuple[TrainConfig, dict, Path, list[str]]:
    """The run's saved configuration, with the given flags of RESUMABLE (and --data) replacing its
    values; any other given flag that differs from the run's is refused, naming it. Returns the
    configuration, the checkpoint, the run's folder and the notices of what changed."""
    resume_path = resolve_resume(config.resume)
    payload = checkpoint.load(resume_path)
    if "optimizer" not in payload or "step" not in payload:
        raise checkpoint.CheckpointError(
            f"--resume {resume_path}: it holds weights only (an imported or final model), not a training run; "
            "start a new run from it with --init"
        )
    saved_fields = payload["config"].get("train") or {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved_fields) - known)
    if unknown:
        raise checkpoint.CheckpointError(
            f"--resume {resume_path}: its training configuration has settings this version does not know "
            f"({', '.join(unknown)}); resume it with the version that wrote it"
        )
    saved = TrainConfig(**saved_fields)
    changes, clash, notes = {name: getattr(config, name) for name in PER_CALL}, [], []
    for name in sorted(given - set(PER_CALL)):
        mine, theirs = getattr(config, name), getattr(saved, name)
        if name == "data":
            changes[name] = mine  # the same files under another name is the same run
        elif mine == theirs:
            continue
        elif name in RESUMABLE:
            changes[name] = mine
            notes.append(f"--{name.replace('_', '-')} {mine} replaces the run's {theirs}")
        else:
            clash.append(f"--{name.replace('_', '-')} {mine} (the run has {theirs})")
    if clash:
        raise ValueError(
            f"--resume continues a run with its own configuration; these flags differ from it: {'; '.join(clash)} "
            "(start a new run, or one from its weights with --init)"
        )
    return dataclasses.replace(saved, **changes), payload, resume_path.parent, notes


def initial_weights(config: TrainConfig) -> tuple[TrainConfig, ModelConfig, dict]:
    """--init CKPT: its model configuration and weights (ours or imported); --bits must agree, and
    the audio settings it was made for fill what the command line leaves open."""
    payload = checkpoint.load(config.init)
    try:
        model_config = ModelConfig(**payload["config"]["model"])
    except (TypeError, KeyError, ValueError) as e:
        raise checkpoint.CheckpointError(
            f"--init {config.init}: its configuration is not a model configuration ({e})"
        ) from None
    if config.bits is not None and config.bits != model_config.bits:
        raise ValueError(f"--bits {config.bits} conflicts with --init {config.init}, a {model_config.bits}-bit model")
    saved = payload["config"].get("train") or {}
    fill = {
        "bits": model_config.bits,
        **{k: saved[k] for k in ("quantization", "sample_rate") if getattr(config, k) is None and saved.get(k)},
    }
    if config.dropout is not None:
        model_config = dataclasses.replace(model_config, dropout=config.dropout)
    state = payload["model"]
    if config.parametrization not in (None, model_config.parametrization):  # the same W, trained as asked
        model = SashimiLM(model_config)
        load_init_weights(model, state, config.init)
        model.parametrize(config.parametrization)
        model_config, state = model.config, model.state_dict()
    return dataclasses.replace(config, **fill), model_config, state


def load_init_weights(model: nn.Module, state: dict, init: str) -> None:
    """--init's weights into `model`, strictly: a weight missing, left over or of another shape is one
    error naming it (a fresh weight in its place would train silently)."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise checkpoint.CheckpointError(
            f"--init {init}: weights do not fit its configuration: {str(e).splitlines()[1].strip()}"
        ) from None


class Start(NamedTuple):
    """Where a run begins: its resolved configuration and the model's, and what it continues or starts from."""

    config: TrainConfig
    model_config: ModelConfig
    payload: dict | None = None  # --resume: the checkpoint the run continues
    run_dir: Path | None = None  # --resume: the run's folder
    init_state: dict | None = None  # --init: the weights a new run starts from
    notes: tuple[str, ...] = ()  # notices for the start: a stop the run was not given, a setting a flag replaced


def starting_point(config: TrainConfig, given: frozenset[str] | None = None) -> Start:
    """A new run from the preset, a new run from --init's weights, or --resume's run, with its
    configuration resolved (every None filled, every value checked, --data made absolute so the run
    resumes from any directory). `given`: the flags given (default: the settings not at their defaults)."""
    if config.resume and config.init:
        raise ValueError(
            "--resume continues a run with its own weights; --init starts a new run from a checkpoint's: give one of "
            "them"
        )
    if config.parametrization not in (None, *PARAMETRIZATIONS):
        raise ValueError(
            f"--parametrization must be one of {', '.join(PARAMETRIZATIONS)}; got {config.parametrization!r}"
        )
    given = given_flags(config) if given is None else given
    if config.data and "data" in given:
        config = dataclasses.replace(config, data=str(Path(config.data).resolve()))
    if config.resume:
        config, payload, run_dir, notes = resumed_config(config, given)
        model_config = ModelConfig(**payload["config"]["model"])
        return Start(config.resolved(model_config.pool), model_config, payload, run_dir, notes=tuple(notes))
    notes = ()
    if config.max_steps is None and config.max_minutes is None:
        notes = (f"neither --max-steps nor --max-minutes given: training stops after {DEMO_MINUTES:g} minutes",)
    if config.init:
        config, model_config, init_state = initial_weights(config)
        return Start(config.resolved(model_config.pool), model_config, init_state=init_state, notes=notes)
    config = config.resolved()
    return Start(config, config.model_config(), notes=notes)


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> int:
    """Keep the records of steps <= `step` (what the checkpoint saw) and drop the rest, including a
    line cut short by a crash or a full disk; rewritten atomically. Returns the records dropped."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            keep = int(record["step"]) <= step
        except (ValueError, KeyError, TypeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)
    return dropped
