"""Drive the official state-spaces/s4 code to make fixtures: its training pipeline (hydra configs,
`SequenceLightningModule`) and its standalone SaShiMi. Nothing of the official code is copied here:
a checkout of it is put on `sys.path` of the process that runs a tools/make_*.py script."""
