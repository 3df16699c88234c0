"""Catalogue entries for bug classes written against this code by others (see docs/MUTATION.md):
training runs, checkpoints, the memory check, resume and --init."""

from sashimi.harness.catalogue_types import Mutant

CLASSES_RUNS: list[Mutant] = [
    Mutant('checkpoint-temp-elsewhere', 'sashimi/io/checkpoint.py', 'save',
           "tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)",
           "tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp')",
           "the checkpoint's temporary file is written in the system's temporary folder, not beside its target "
           "(the rename is a copy across file systems, no longer atomic)",
           kills='tests/io/test_checkpoint.py'),
    Mutant('memory-estimate-ignores-batch', 'sashimi/training/memory.py', 'bare_bytes',
           'batch * seq_len * bytes_per_position(config, training)',
           'seq_len * bytes_per_position(config, training)',
           'the memory estimate counts one clip whatever the batch size (a large batch is never refused)',
           kills='tests/training/test_memory.py'),
    Mutant('npz-read-with-pickle', 'sashimi/io/statefile.py', 'read_state_dict',
           'np.load(path, allow_pickle=False)',
           'np.load(path, allow_pickle=True)',
           'a .npz is read with pickling allowed: an object array in it runs stored code',
           kills='tests/io/test_pipeline.py'),
    Mutant('rank-from-local-rank', 'sashimi/training/processes.py', 'Processes.from_environment',
           "os.environ.get('RANK', '0')",
           "os.environ.get('LOCAL_RANK', '0')",
           "a process's rank read from LOCAL_RANK: on several nodes every node has a rank 0 (all write the run)",
           kills='tests/training/test_processes.py'),
    Mutant('data-fingerprint-counts-only', 'sashimi/training/data.py', 'check_data_unchanged',
           "now['sha256'] == saved['sha256']",
           "now['files'] == saved['files']",
           'a resume compares only the number of data files: renamed or resized files pass unnoticed',
           kills='tests/training/test_faults_data.py'),
    Mutant('unigram-over-whole-split', 'sashimi/training/evaluation.py', 'validation_unigram_bits',
           'zip(range(eval_batches), sequential_batches(val_set, batch_size))',
           'enumerate(sequential_batches(val_set, batch_size))',
           'the unigram baseline counts the whole validation split, not the --eval-batches batches validated',
           kills='tests/training/test_loop.py'),
    Mutant('plateau-threshold-absolute', 'sashimi/training/optimizer.py', 'make_optimizer',
           "torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=spec.plateau_factor, "
           "patience=spec.plateau_patience)",
           "torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=spec.plateau_factor, "
           "patience=spec.plateau_patience, threshold_mode='abs')",
           "the plateau threshold taken in absolute nats (the pipeline's is torch's default: relative 1e-4)",
           kills='tests/training/test_optimizer.py'),
    Mutant('init-checkpoint-audio-wins', 'sashimi/training/runs.py', 'initial_weights',
           "{k: saved[k] for k in ('quantization', 'sample_rate') if getattr(config, k) is None and saved.get(k)}",
           "{k: saved[k] for k in ('quantization', 'sample_rate') if saved.get(k)}",
           "--init: the checkpoint's quantization and sample rate override --quantization and --sample-rate",
           kills='tests/training/test_init.py'),
    Mutant('memory-check-global-batch', 'sashimi/training/loop.py', 'train',
           "memory.check_fits(start.model_config, per_process, config.seq_len, device, 'a training step', "
           "'--seq-len or --batch-size')",
           "memory.check_fits(start.model_config, config.batch_size, config.seq_len, device, 'a training step', "
           "'--seq-len or --batch-size')",
           'the memory check counts the global batch on each process, not its share (refuses runs that fit)',
           kills='tests/training/test_memory.py'),
]
