"""Catalogue entries for bug classes written against this code by others (see docs/MUTATION.md):
sampling, generate, the tolerance command, the gate's rows and interop."""

from sashimi.harness.catalogue_types import Mutant

CLASSES_IO: list[Mutant] = []
