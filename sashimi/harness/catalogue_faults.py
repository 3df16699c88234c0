"""The mutation catalogue, continued: generation's outputs, a run's data, Lightning files and the
other Delta transform (nothing lost, nothing silently wrong)."""

from sashimi.harness.catalogue_types import Mutant

FAULTS = [
    # --- generation's outputs ---
    Mutant('generate-mixes-folders', 'sashimi/sampling/write.py', 'prepare_folder',
           'earlier and not overwrite',
           'earlier and overwrite',
           'a second run into a folder of samples mixes its files with the earlier ones', kills='tests/test_errors_generate.py'),
    Mutant('generate-interrupt-keeps-nothing', 'sashimi/sampling/write.py', 'keep_interrupted',
           'done = sum(len(s) for s in scores)',
           'done = 0',
           'Ctrl-C throws away the batches already finished', kills='tests/test_errors_generate.py'),
    Mutant('generate-wav-before-png', 'sashimi/sampling/write.py', 'write_pair',
           'os.replace(tmp_png, png)\ncurrent = wav\nos.replace(tmp_wav, wav)',
           'os.replace(tmp_wav, wav)\ncurrent = wav\nos.replace(tmp_png, png)',
           'the WAV is renamed before its PNG: a failed PNG leaves a WAV alone', kills='tests/test_errors_generate.py'),
    # --- a run's data ---
    Mutant('audio-rate-no-upper-bound', 'sashimi/audio/dataset.py', 'load_audio',
           'not low <= rate <= high',
           'not low <= rate',
           'a header claiming 2 GHz is resampled to a sample or two and trained on', kills='tests/training/test_faults_data.py'),
    Mutant('fingerprint-ignores-sizes', 'sashimi/audio/dataset.py', 'folder_fingerprint',
           "f'{path.relative_to(folder).as_posix()}\\x00{path.stat().st_size}\\n'",
           "f'{path.relative_to(folder).as_posix()}\\x00\\n'",
           "the data fingerprint ignores the files' sizes (a rewritten clip resumes silently)", kills='tests/training/test_faults_data.py'),
    Mutant('refused-run-leaves-folder', 'sashimi/training/loop.py', 'prepare_run',
           'shutil.rmtree(run_dir, ignore_errors=True)',
           'None',
           'a run refused before its first step leaves its folder behind', kills='tests/training/test_faults_data.py'),
    Mutant('every-rank-writes-data', 'sashimi/training/data.py', 'write_embedded_data',
           'not config.data and procs.is_main and not folder.exists()',
           'not config.data and not folder.exists()',
           'every process writes the embedded dataset (one lists a folder another is writing)', kills='tests/training/test_faults_data.py'),
    Mutant('resume-ignores-changed-data', 'sashimi/training/data.py', 'check_data_unchanged',
           'not config.allow_changed_data',
           'config.allow_changed_data',
           '--resume continues on a changed data folder without --allow-changed-data', kills='tests/training/test_faults_data.py'),
    # --- published weights ---
    Mutant('key-prefix-ignored', 'sashimi/io/pipeline.py', 'key_prefix',
           'prefix = min(hits, key=len)[:-len(anchor)]',
           "prefix = ''",
           "a wrapper's key prefix (module., model.) is not found, so its keys are missing", kills='tests/io/test_lightning.py'),
    Mutant('other-transform-is-the-same', 'sashimi/harness/published.py', 'other_transform_passes',
           "other = 'softplus' if meta.get('dt_transform', 'exp') == 'exp' else 'exp'",
           "other = meta.get('dt_transform', 'exp')",
           'check never names the other Delta transform that would pass', kills='tests/io/test_lightning.py'),
]
