"""The documented contract as data (JSON): tolerances, presets, parameter counts, shapes, claims.

Installed as `sashimi.specdata`; read it through `sashimi.spec`.
"""
