"""What a run does when it stops: the loss plot, the last validation against the unigram baseline of
what it validated (did it learn?), and the closing sample."""

import time

from sashimi.audio.dataset import AudioDataset
from sashimi.io.plots import plot_losses
from sashimi.sampling.write import generate_to_folder
from sashimi.training.evaluation import validation_unigram_bits


def finish(run, val_set: AudioDataset, start_step: int, start: float, log) -> None:
    """The loss plot, the last validation against the unigram baseline of the validation split
    (did it learn?) and, with --sample-seconds, one generated sample."""
    config = run.config
    plot = plot_losses(run.run_dir / "metrics.jsonl", run.run_dir / "loss.png")
    log(
        f"trained {run.step - start_step} steps in {time.monotonic() - start:.0f} s; checkpoint "
        f"{run.run_dir / 'checkpoint.pt'}; loss plot {plot}"
    )
    if run.last_validation is not None:
        bits = run.last_validation["bits_per_sample"]
        baseline = validation_unigram_bits(val_set, config.batch_size, config.eval_batches) + 0.0  # not -0.00
        log(
            f"validation {bits:.2f} bits/sample, unigram baseline of the validation split {baseline:.2f} "
            f"({abs(baseline - bits):.2f} {'below' if bits <= baseline else 'above'})"
        )
    if config.sample_seconds > 0:
        written = generate_to_folder(
            run.model,
            config.quantization,
            config.sample_rate,
            run.run_dir / "samples",
            n_samples=1,
            length=round(config.sample_seconds * config.sample_rate),  # as generate's --seconds
            seed=config.seed,
            log=log,
            overwrite=True,
        )  # the run's sample at its latest step replaces the one of an earlier stop
        for path in written:
            log(f"generated sample: {path}; waveform and spectrogram {path.with_suffix('.png')}")
