"""Catalogue entries for bug classes written against this code by others (see docs/MUTATION.md):
training runs, checkpoints, the memory check, resume and --init."""

from sashimi.harness.catalogue_types import Mutant

CLASSES_RUNS: list[Mutant] = []
